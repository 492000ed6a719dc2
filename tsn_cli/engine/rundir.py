"""One training run per output folder: what a run leaves in `--output`, refusing to mix two runs there, and
starting a run there (its config.yaml and label_names.txt).

A folder is *used* when it holds results of a run: checkpoints (`TSN_*.pdparams/.pdopt/.state.json`),
`metrics.jsonl`, `curves.png` or `vdl/`. `config.yaml` and `label_names.txt` alone are not results (every run
writes them first), and files that are not ours never count. A new run into a used folder would append to the
old metrics and overwrite `TSN_best.*` with whatever it reaches first, so it is refused unless it continues the
run (`--resume`) or starts the folder afresh (`--overwrite`, which removes our files and nothing else).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable, Optional

from tsn_cli.config import CONFIG_NAME, save_config
from tsn_cli.engine.checkpoints import FILE_PATTERN, find_latest_checkpoint
from tsn_cli.errors import ConfigError, TsnError

LAUNCH_LOG_DIR = "log"  # where `tsn train --gpus` points paddle.distributed.launch's --log_dir, inside --output
_RESULT_RE = re.compile(rf"^({FILE_PATTERN}|metrics\.jsonl|curves\.png)$")
LABEL_NAMES = "label_names.txt"
_SETUP_FILES = (CONFIG_NAME, LABEL_NAMES)
_RESULT_DIRS = ("vdl",)
# a temporary file of an atomic write that a kill left behind: .NAME.XXXXXXXX.tmp (see fsutil.atomic_path)
_TMP_RE = re.compile(r"^\.(TSN_.*|metrics\.jsonl|curves\.png|config\.yaml|label_names\.txt)\.[^.]+\.tmp$")


def run_results(output: str | Path) -> list[Path]:
    """Result files and folders of a run in `output` (sorted; empty when there are none or no folder)."""
    try:
        entries = list(Path(output).iterdir())
    except OSError:
        return []
    return sorted(p for p in entries if _RESULT_RE.match(p.name) or (p.name in _RESULT_DIRS and p.is_dir()))


def run_files(output: str | Path, *, keep_launch_log: bool = False) -> list[Path]:
    """Everything a run of ours wrote in `output`: results, config, label names, launcher logs, stale temps."""
    try:
        entries = list(Path(output).iterdir())
    except OSError:
        return []
    ours = set(run_results(output))
    for p in entries:
        if p.name in _SETUP_FILES or _TMP_RE.match(p.name):
            ours.add(p)
        elif p.name == LAUNCH_LOG_DIR and p.is_dir() and not keep_launch_log:
            ours.add(p)
    return sorted(ours)


def _names(paths: list[Path], limit: int = 3) -> str:
    """'TSN_epoch_00004.pdparams, metrics.jsonl' -- the most telling few names: checkpoints (latest first), then
    metrics.jsonl and the rest; the .pdopt/.state.json companions of a checkpoint are not repeated."""
    main = [p for p in paths if not p.name.endswith((".pdopt", ".state.json"))] or paths
    ckpts = sorted((p.name for p in main if p.name.endswith(".pdparams")), reverse=True)
    rest = sorted((p.name for p in main if not p.name.endswith(".pdparams")), key=lambda n: (n != "metrics.jsonl", n))
    shown = (ckpts + rest)[:limit]
    more = len(main) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def check_output_or_warn(output, resume, overwrite: bool, dry_run: bool, on_message: Callable[[str], None]) -> None:
    """`check_output` for a run about to start; a dry run (which writes nothing) only gets the refusal as a warning."""
    try:
        check_output(output, resume=resume, overwrite=overwrite)
    except ConfigError:
        raise
    except TsnError as exc:
        if not dry_run:
            raise
        on_message(f"warning: {exc} (this dry run writes nothing)")


def check_output(output: str | Path, *, resume: Optional[str | Path] = None, overwrite: bool = False) -> None:
    """Refuse (TsnError, exit 2) a run that would mix with another run's results in `output`.

    Allowed: a new, empty or unrelated folder; `resume` continuing a checkpoint of this folder; `overwrite`.
    `--resume auto` in a folder with results but no complete checkpoint is refused too (it would start afresh
    on top of them).
    """
    output = Path(output)
    if overwrite and resume:
        raise ConfigError(
            "--overwrite starts the output folder afresh and --resume continues it: pass only one of them"
        )
    if overwrite:
        return
    results = run_results(output)
    if not results:
        return
    held = _names(results)
    if not resume:
        raise TsnError(
            f"{output} already holds a training run ({held}); continue it with --resume auto, "
            "pick another --output, or start afresh with --overwrite"
        )
    if str(resume) in ("auto", "latest", ""):
        if find_latest_checkpoint(output) is None:
            raise TsnError(
                f"--resume auto: {output} holds results of a run ({held}) but no complete checkpoint to continue; "
                "start afresh with --overwrite or pick another --output"
            )
        return
    ckpt = Path(resume)
    if ckpt.parent.resolve() != output.resolve():
        raise TsnError(
            f"--resume {resume}: that checkpoint is not in --output {output}, which already holds another run "
            f"({held}); resume into the checkpoint's own folder or pick another --output"
        )


def clear_run(output: str | Path, *, keep_launch_log: bool = False) -> list[Path]:
    """Remove our run files from `output` (never anything else) and return what was removed."""
    removed = run_files(output, keep_launch_log=keep_launch_log)
    for p in removed:
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        except OSError as exc:
            raise TsnError(f"--overwrite: cannot remove {p}: {exc.strerror or exc}") from exc
    return removed


def start_run(output: str | Path, cfg, *, overwrite: bool = False, on_message=lambda msg: None) -> None:
    """Write the run's config.yaml and label_names.txt into `output`; with `overwrite`, first remove the previous
    run's files (under paddle.distributed.launch its log folder, which is being written, stays)."""
    from tsn_cli.engine.build import label_names
    from tsn_cli.fsutil import atomic_write_text

    output = Path(output)
    if overwrite:
        removed = clear_run(output, keep_launch_log="PADDLE_TRAINERS_NUM" in os.environ)
        if removed:
            on_message(f"--overwrite: removed {len(removed)} files of the previous run in {output}")
    output.mkdir(parents=True, exist_ok=True)
    save_config(cfg, output / CONFIG_NAME)
    names = label_names(cfg)
    atomic_write_text(output / LABEL_NAMES, "".join(f"{i} {n}\n" for i, n in enumerate(names)))

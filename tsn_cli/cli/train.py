"""`tsn train`: parse options, show the config, drive `tsn_cli.engine.train.Trainer` with a live display."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tsn_cli.cli import common as C


def relaunch_argv(args: list[str], gpus: str, log_dir: str | Path) -> list[str]:
    """The command that re-runs `tsn <args>` through Paddle's launcher on `gpus` (without the --gpus option),
    with the launcher's logs in `log_dir` (its default is ./log, in whatever folder the user happens to be)."""
    rest, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--gpus":
            skip = True
            continue
        if a.startswith("--gpus="):
            continue
        rest.append(a)
    launch = [sys.executable, "-m", "paddle.distributed.launch", "--gpus", gpus, "--log_dir", str(log_dir)]
    return [*launch, "-m", "tsn_cli", *rest]


def train(
    data: C.DataOpt = None,
    config: C.ConfigOpt = None,
    override: C.OverrideOpt = None,
    seg_num: C.SegNumOpt = None,
    depth: C.DepthOpt = None,
    target_size: C.TargetSizeOpt = None,
    num_classes: C.NumClassesOpt = None,
    epochs: C.EpochsOpt = None,
    batch_size: C.BatchSizeOpt = None,
    lr: C.LrOpt = None,
    train_list: C.TrainListOpt = None,
    val_list: C.ValListOpt = None,
    data_root: C.DataRootOpt = None,
    pretrained: C.PretrainedOpt = None,
    weights: Annotated[
        Optional[str],
        typer.Option(
            "--weights",
            "-w",
            help="Fine-tune from a whole-model checkpoint: a file, an http(s):// URL or a known name such as tsn_k400 "
            "(shape-mismatched tensors, e.g. another class count, are skipped).",
            rich_help_panel="Model",
        ),
    ] = None,
    sha256: C.Sha256Opt = None,
    output: C.OutputOpt = None,
    device: C.DeviceOpt = None,
    workers: C.WorkersOpt = None,
    seed: C.SeedOpt = None,
    resume: Annotated[
        Optional[str],
        typer.Option(
            "--resume",
            help="Continue a run exactly: 'auto' picks the checkpoint furthest along in --output (TSN_epoch_XXXXX or "
            "the mid-epoch TSN_interrupted written on Ctrl-C), or give a .pdparams path.",
            rich_help_panel="Runtime",
        ),
    ] = None,
    amp: Annotated[
        Optional[str], typer.Option("--amp", help="Mixed precision on GPU: fp16 or bf16.", rich_help_panel="Runtime")
    ] = None,
    amp_level: Annotated[
        Optional[str], typer.Option("--amp-level", help="AMP level O1 or O2.", rich_help_panel="Runtime")
    ] = None,
    auto_scale_lr: Annotated[
        bool,
        typer.Option(
            "--auto-scale-lr",
            help="Scale the LR linearly with the global batch (train.base_batch_size).",
            rich_help_panel="Training",
        ),
    ] = False,
    keep_last: Annotated[
        Optional[int],
        typer.Option(
            "--keep-last",
            help="Keep only the N latest TSN_epoch_* checkpoints (train.keep_last; TSN_best and the latest "
            "always stay). Default: keep all.",
            rich_help_panel="Training",
        ),
    ] = None,
    freeze_stages: Annotated[
        Optional[int],
        typer.Option(
            "--freeze-stages",
            help="Fine-tuning: conv1 and the first N residual stages (res2..res(N+1), N = 1..4) get no "
            "updates and keep their BatchNorm statistics (train.freeze_stages; 0: train all).",
            rich_help_panel="Fine-tuning",
        ),
    ] = None,
    partial_bn: Annotated[
        bool,
        typer.Option(
            "--partial-bn",
            help="Fine-tuning: TSN's partial BN, every BatchNorm but the first frozen (train.partial_bn).",
            rich_help_panel="Fine-tuning",
        ),
    ] = False,
    patience: Annotated[
        Optional[int],
        typer.Option(
            "--patience",
            help="Stop when val top-1 has not improved for N validations (train.patience).",
            rich_help_panel="Fine-tuning",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Start afresh in an --output folder that holds a previous run: remove its checkpoints, metrics.jsonl,"
            " curves.png, config.yaml, label_names.txt, vdl/ and log/ (nothing else) first.",
            rich_help_panel="Runtime",
        ),
    ] = False,
    gpus: Annotated[
        Optional[str],
        typer.Option(
            "--gpus",
            help="Data-parallel on these GPUs, e.g. 0,1,2,3: re-runs this command through `python -m "
            "paddle.distributed.launch --gpus ...` (its logs go to OUTPUT/log). Needs a CUDA build of Paddle.",
            rich_help_panel="Runtime",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate the config, open the lists, report model size and FLOPs, and exit."),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Show every config key at the start (default: only what differs from --config, or from the defaults).",
        ),
    ] = False,
    json_out: C.JsonOpt = False,
) -> None:
    """Train a TSN model.

    Examples:\n
      tsn train --data my_videos --epochs 30  (a folder prepared by `tsn prepare folder my_videos`)\n
      tsn train --config configs/tsn_ucf101_videos.yaml --pretrained resnet50  (downloaded once, cached)\n
      tsn train --config configs/tsn_demo.yaml --pretrained none  (from scratch)\n
      tsn train --config configs/tsn_demo.yaml --seg-num 7 --epochs 10\n
      tsn train --data my_videos --pretrained tsn_k400 --freeze-stages 2 --partial-bn --patience 5  (few clips)\n
      tsn train --config configs/tsn_k400_frames.yaml --resume auto\n
      python -m paddle.distributed.launch --gpus 0,1,2,3 -m tsn_cli train --config configs/tsn_k400_frames.yaml\n
      python -m paddle.distributed.launch --host 127.0.0.1 --nproc_per_node 2 -m tsn_cli train ...  (CPU, gloo)\n

    Checkpoints go to --output: TSN_epoch_XXXXX.pdparams/.pdopt (+ .state.json), TSN_best.*, metrics.jsonl,
    curves.png. Ctrl-C stops at the next step and saves TSN_interrupted.* (exit 130); --resume auto continues
    exactly where it stopped. With several processes only rank 0 writes files and shows progress.
    One run per folder: an --output holding a previous run's results is refused unless --resume continues it
    or --overwrite starts it afresh.
    """
    from tsn_cli.config import load_config, parse_override, require_file
    from tsn_cli.errors import ConfigError

    scratch = pretrained is not None and pretrained.strip().lower() == "none"
    if sha256 is not None and weights is not None and pretrained is not None and not scratch:
        raise ConfigError("--sha256 pins one file: give it with --weights or with --pretrained, not both")
    cfg = C.build_config(
        config=config,
        overrides=override,
        data=data,
        seg_num=seg_num,
        depth=depth,
        target_size=target_size,
        num_classes=num_classes,
        pretrained=None if scratch else pretrained,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        train_list=train_list,
        val_list=val_list,
        data_root=data_root,
        output=output,
        device=device,
        workers=workers,
        seed=seed,
        amp=amp,
        amp_level=amp_level,
        auto_scale_lr=auto_scale_lr or None,  # off is "not given": the config's train.auto_scale_lr stands
        keep_last=keep_last,
        freeze_stages=freeze_stages,
        partial_bn=partial_bn or None,
        patience=patience,
    )
    # required settings first: a missing list is one line, not a config table followed by an error
    require_file(cfg.data.train_list, "data.train_list")
    if cfg.data.val_list is not None and cfg.train.val_interval > 0:
        require_file(cfg.data.val_list, "data.val_list")
    from tsn_cli.engine.runlists import follow_given_lists

    # lists that are not the config file's: its test list and class names must not be saved with this run
    file_cfg = load_config(config, partial=True)  # its lists only; checked as a whole in the merged config
    pinned = {".".join(parse_override(item)[0]) for item in override or []}
    cfg, notes = follow_given_lists(cfg, file_cfg, pinned)
    cfg = _resolve_pretrained(
        cfg, scratch, from_flag=pretrained is not None, sha256=sha256 if weights is None else None
    )
    weights = C.resolve_weights(weights, sha256=sha256)
    if not dry_run:  # before anything is shown or launched: one line (a dry run only warns, in the trainer)
        from tsn_cli.engine.rundir import check_output

        check_output(cfg.runtime.output, resume=resume, overwrite=overwrite)
    if gpus and "PADDLE_TRAINERS_NUM" not in os.environ:
        _relaunch(gpus, Path(cfg.runtime.output), overwrite and not dry_run)
    from tsn_cli.cli.train_view import run_training

    reference = (file_cfg, str(config) if config is not None else None)
    run_training(
        cfg,
        weights=weights,
        resume=resume,
        overwrite=overwrite,
        dry_run=dry_run,
        json_out=json_out,
        reference=reference,
        verbose=verbose,
        notes=notes,
    )


def _resolve_pretrained(cfg, scratch: bool, from_flag: bool, sha256: Optional[str]):
    """model.pretrained as a local file: a name or URL is downloaded into the cache (or found there); `none`
    (--pretrained none, or the value none in a config) trains from scratch."""
    from tsn_cli import ui
    from tsn_cli.errors import ConfigError

    value = cfg.model.pretrained
    if scratch or (value is not None and str(value).strip().lower() in ("none", "")):
        if value is not None or scratch:
            ui.info("[dim]pretrained: none: the backbone starts from random init (training from scratch)[/]")
        return cfg.model_copy(update={"model": cfg.model.model_copy(update={"pretrained": None})})
    if value is None:
        return cfg
    from tsn_cli.cli.fetch import fetch_value
    from tsn_cli.config import with_values

    flag = "--pretrained" if from_flag else "model.pretrained"
    path = fetch_value(str(value), flag, sha256)
    if not path.is_file():
        raise ConfigError(
            f"{flag}: {path} is a folder, not a weights file" if path.is_dir() else f"{flag}: file not found: {path}"
        )
    return with_values(cfg, {"model.pretrained": str(path)})


def _relaunch(gpus: str, output: Path, overwrite: bool) -> None:
    """Check the GPUs, then replace this process by Paddle's launcher running this command on each of them."""
    import shutil

    from tsn_cli.engine.rundir import LAUNCH_LOG_DIR
    from tsn_cli.fsutil import ensure_dir
    from tsn_cli.runtime import check_gpus

    check_gpus(gpus)
    log_dir = output / LAUNCH_LOG_DIR
    if overwrite:  # the old run's launcher logs; rank 0 removes the rest once the run is set up
        shutil.rmtree(log_dir, ignore_errors=True)
    ensure_dir(output)
    os.execv(sys.executable, relaunch_argv(sys.argv[1:], gpus, log_dir))

"""Options shared by train/eval/export/predict, and building the run config from them.

How flags become the run config (precedence, the checkpoint's architecture) is library code, shared with the
Python API: see `tsn_cli.engine.runconfig.build_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from tsn_cli.engine.runconfig import build_config  # noqa: F401 - the commands call it as C.build_config

if TYPE_CHECKING:  # the config (pydantic) is imported inside the functions: `tsn --help` does not need it
    from tsn_cli.config import RunConfig

DataOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--data",
        help="A dataset folder written by `tsn prepare` (or its dataset.yaml): lists, format, class names and count. "
        "Flags and -o still win.",
        rich_help_panel="Data",
    ),
]
ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="YAML run config (see configs/).", rich_help_panel="Config")
]
OverrideOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--override",
        "-o",
        help="Override a config key: -o section.key=value (repeatable), e.g. -o train.lr=0.005.",
        rich_help_panel="Config",
    ),
]
VideoTimeoutOpt = Annotated[
    Optional[float],
    typer.Option(
        "--video-timeout",
        min=0.001,
        help="Seconds one video may take to open and decode before it is reported as bad (default: 60; the "
        "TSN_VIDEO_TIMEOUT variable).",
        rich_help_panel="Data",
    ),
]
SegNumOpt = Annotated[
    Optional[int], typer.Option("--seg-num", help="Segments (frames) per clip.", rich_help_panel="Model")
]
DepthOpt = Annotated[
    Optional[int], typer.Option("--depth", help="ResNet depth: 18, 34, 50, 101 or 152.", rich_help_panel="Model")
]
TargetSizeOpt = Annotated[
    Optional[int], typer.Option("--target-size", help="Crop size fed to the network (pixels).", rich_help_panel="Model")
]
NumClassesOpt = Annotated[
    Optional[int], typer.Option("--num-classes", help="Number of classes.", rich_help_panel="Model")
]
PretrainedOpt = Annotated[
    Optional[str],
    typer.Option(
        "--pretrained",
        help="ImageNet backbone weights: a .pdparams/.safetensors file, an http(s):// URL, a known name (resnet50; see"
        " `tsn weights list`), or none (train from scratch).",
        rich_help_panel="Model",
    ),
]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--weights",
        "-w",
        help="Whole-model weights (.pdparams or .safetensors), a training output folder (its TSN_best.pdparams), an "
        "http(s):// URL or a known name (tsn_k400; see `tsn weights list`).",
        rich_help_panel="Model",
    ),
]
Sha256Opt = Annotated[
    Optional[str],
    typer.Option(
        "--sha256",
        help="Expected sha256 of the --weights/--pretrained file (64 hex digits): a download or file that differs is "
        "refused.",
        rich_help_panel="Model",
    ),
]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="Training epochs.", rich_help_panel="Training")]
BatchSizeOpt = Annotated[
    Optional[int], typer.Option("--batch-size", "-b", help="Clips per device per step.", rich_help_panel="Training")
]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="Base learning rate.", rich_help_panel="Training")]
TrainListOpt = Annotated[
    Optional[Path], typer.Option("--train-list", help="Training list file.", rich_help_panel="Data")
]
ValListOpt = Annotated[Optional[Path], typer.Option("--val-list", help="Validation list file.", rich_help_panel="Data")]
DataRootOpt = Annotated[
    Optional[Path], typer.Option("--data-root", help="Prefix for relative paths in the lists.", rich_help_panel="Data")
]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", help="Output folder.", rich_help_panel="Runtime")]
DeviceOpt = Annotated[
    Optional[str],
    typer.Option("--device", help="auto (GPU if there is one), cpu, gpu or gpu:N.", rich_help_panel="Runtime"),
]
WorkersOpt = Annotated[
    Optional[int], typer.Option("--workers", help="Data-loading worker processes.", rich_help_panel="Runtime")
]
DecodeWorkersOpt = Annotated[
    Optional[int],
    typer.Option(
        "--decode-workers",
        min=0,
        help="Processes decoding the next videos during inference (default: the cores the engine leaves free, "
        "at least 1; 0: decode in the main process). Results do not change.",
        rich_help_panel="Runtime",
    ),
]
SeedOpt = Annotated[
    Optional[int], typer.Option("--seed", help="Random seed (sampling, augmentation, init).", rich_help_panel="Runtime")
]
LabelsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--labels",
        help="Class names: '<id> <name>' lines or one name per line (default: data.label_names, else class ids).",
        rich_help_panel="Data",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="If another tsn run is writing the same output, wait for it to finish (default: stop with exit 2).",
    ),
]
CropsOpt = Annotated[
    Optional[int],
    typer.Option("--crops", help="Test-time crops per frame: 1 (centre), 3 or 10.", rich_help_panel="Views"),
]


def resolve_weights(weights, flag: str = "--weights", sha256: Optional[str] = None) -> Optional[Path]:
    """The weights file a `--weights` value means: a name or URL is downloaded into the cache (or found there), a
    training folder means its TSN_best.pdparams (said on stderr); `sha256` pins the file's checksum."""
    if weights is None:
        return None
    from tsn_cli.cli.fetch import fetch_value
    from tsn_cli.model.checkpoint import resolve_weights as resolve
    from tsn_cli.ui import info

    path, note = resolve(fetch_value(str(weights), flag, sha256), flag)
    if note:
        info(note)
        if sha256:  # a folder: pin its TSN_best.pdparams
            from tsn_cli.model.hub import check_hex, check_local_sha

            check_local_sha(path, check_hex(sha256), flag)
    return path


def no_config_hint(config: Optional[Path], weights: Optional[Path]) -> Optional[str]:
    """'no config.yaml was found beside W' when the run has neither --config nor a config beside the weights."""
    from tsn_cli.config import config_beside

    if config is None and weights is not None and config_beside(weights) is None:
        return f"no config.yaml was found beside {weights}"
    return None


def show_config(
    cfg: RunConfig, reference: RunConfig | None = None, source: str | None = None, verbose: bool = False
) -> None:
    """Print the run config (stderr, so --json stays clean): only the keys that differ from `reference` (the
    config file, or the defaults without one), or every key with `verbose`."""
    from tsn_cli.ui import err_console, safe, table

    if verbose or reference is None:
        err_console.print(table("Run config", ["key", "value"], cfg.flat(), paths=(1,)))
        return
    base = source or "defaults"
    was = dict(reference.flat())
    changed = [(k, v, was.get(k)) for k, v in cfg.flat() if v != was.get(k)]
    if not changed:
        err_console.print(f"[dim]run config: {safe(base)} as is (--verbose shows every key)[/]")
        return
    t = table(
        f"Run config: changes to {base}",
        ["key", "value", f"in {'the config file' if source else 'defaults'}"],
        changed,
        paths=(1, 2),
    )
    t.caption, t.caption_justify = "--verbose shows every key", "left"
    err_console.print(t)

"""Options shared by train/eval/export/predict, and building the run config from them.

Precedence (later wins): built-in defaults <- the `config.yaml` saved beside `--weights` (when no `--config`)
<- `--config FILE` <- `-o section.key=value` <- first-class flags such as `--seg-num`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tsn_cli.config import RunConfig, config_beside, load_config, with_values
from tsn_cli.errors import ConfigError

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML run config (see configs/).", rich_help_panel="Config")]
OverrideOpt = Annotated[
    Optional[list[str]],
    typer.Option("--override", "-o", help="Override a config key: -o section.key=value (repeatable), e.g. -o train.lr=0.005.", rich_help_panel="Config"),
]
SegNumOpt = Annotated[Optional[int], typer.Option("--seg-num", help="Segments (frames) per clip.", rich_help_panel="Model")]
DepthOpt = Annotated[Optional[int], typer.Option("--depth", help="ResNet depth: 18, 34, 50, 101 or 152.", rich_help_panel="Model")]
TargetSizeOpt = Annotated[Optional[int], typer.Option("--target-size", help="Crop size fed to the network (pixels).", rich_help_panel="Model")]
NumClassesOpt = Annotated[Optional[int], typer.Option("--num-classes", help="Number of classes.", rich_help_panel="Model")]
PretrainedOpt = Annotated[Optional[Path], typer.Option("--pretrained", help="ImageNet backbone weights (.pdparams or .safetensors).", rich_help_panel="Model")]
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", "-w", help="Whole-model weights (.pdparams or .safetensors).", rich_help_panel="Model")]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="Training epochs.", rich_help_panel="Training")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Clips per device per step.", rich_help_panel="Training")]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="Base learning rate.", rich_help_panel="Training")]
TrainListOpt = Annotated[Optional[Path], typer.Option("--train-list", help="Training list file.", rich_help_panel="Data")]
ValListOpt = Annotated[Optional[Path], typer.Option("--val-list", help="Validation list file.", rich_help_panel="Data")]
DataRootOpt = Annotated[Optional[Path], typer.Option("--data-root", help="Prefix for relative paths in the lists.", rich_help_panel="Data")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", help="Output folder.", rich_help_panel="Runtime")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto (GPU if there is one), cpu, gpu or gpu:N.", rich_help_panel="Runtime")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", help="Data-loading worker processes.", rich_help_panel="Runtime")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed (sampling, augmentation, init).", rich_help_panel="Runtime")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
CropsOpt = Annotated[Optional[int], typer.Option("--crops", help="Test-time crops per frame: 1 (centre), 3 or 10.", rich_help_panel="Views")]


def build_config(
    *,
    config: Optional[Path],
    overrides: Optional[list[str]],
    weights: Optional[Path] = None,
    seg_num: Optional[int] = None,
    depth: Optional[int] = None,
    target_size: Optional[int] = None,
    num_classes: Optional[int] = None,
    pretrained: Optional[Path] = None,
    epochs: Optional[int] = None,
    batch_size: Optional[int] = None,
    lr: Optional[float] = None,
    train_list: Optional[Path] = None,
    val_list: Optional[Path] = None,
    data_root: Optional[Path] = None,
    output: Optional[Path] = None,
    device: Optional[str] = None,
    workers: Optional[int] = None,
    seed: Optional[int] = None,
    crops: Optional[int] = None,
    eval_seg_num: Optional[int] = None,
) -> RunConfig:
    """Resolve the run config from a file, the config saved beside the weights, overrides and flags."""
    base = None
    if config is None and weights is not None:
        beside = config_beside(weights)
        if beside is not None:
            base = load_config(beside)
    cfg = load_config(config, overrides, base=base)
    flags = {
        "model.seg_num": seg_num,
        "model.depth": depth,
        "augment.target_size": target_size,
        "model.num_classes": num_classes,
        "model.pretrained": pretrained,
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.lr": lr,
        "data.train_list": train_list,
        "data.val_list": val_list,
        "data.data_root": data_root,
        "runtime.output": output,
        "runtime.device": device,
        "runtime.workers": workers,
        "runtime.seed": seed,
        "eval.crops": crops,
        "eval.seg_num": eval_seg_num,
    }
    if target_size is not None and target_size > cfg.augment.short_side:
        # A bigger crop needs a bigger resize: keep PaddleVideo's 256/224 ratio.
        flags["augment.short_side"] = int(round(target_size * 256 / 224))
    names = {k: "--" + k.split(".")[1].replace("_", "-") for k in flags}
    try:
        return with_values(cfg, flags)
    except ConfigError:
        # Apply one flag at a time on top of the config to name the flag that is wrong.
        for key, value in flags.items():
            if value is not None:
                with_values(cfg, {key: value}, source=f"option {names[key]}")
        raise


def show_config(cfg: RunConfig, title: str = "Run config") -> None:
    """Print the resolved config as a table (stderr, so --json stays clean)."""
    from tsn_cli.ui import err_console, table

    err_console.print(table(title, ["key", "value"], [(k, "" if v is None else v) for k, v in cfg.flat()]))

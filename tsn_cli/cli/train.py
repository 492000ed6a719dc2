"""`tsn train`: parse options, show the config, drive `tsn_cli.engine.train.Trainer` with a live display."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tsn_cli.cli import common as C


def relaunch_argv(args: list[str], gpus: str) -> list[str]:
    """The command that re-runs `tsn <args>` through Paddle's launcher on `gpus`, without the --gpus option."""
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
    return [sys.executable, "-m", "paddle.distributed.launch", "--gpus", gpus, "-m", "tsn_cli", *rest]


def train(
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
    weights: Annotated[Optional[Path], typer.Option("--weights", "-w", help="Fine-tune from a whole-model checkpoint (shape-mismatched tensors, e.g. another class count, are skipped).", rich_help_panel="Model")] = None,
    output: C.OutputOpt = None,
    device: C.DeviceOpt = None,
    workers: C.WorkersOpt = None,
    seed: C.SeedOpt = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Continue a run exactly: 'auto' picks the checkpoint furthest along in --output (TSN_epoch_XXXXX or the mid-epoch TSN_interrupted written on Ctrl-C), or give a .pdparams path.", rich_help_panel="Runtime")] = None,
    amp: Annotated[Optional[str], typer.Option("--amp", help="Mixed precision on GPU: fp16 or bf16.", rich_help_panel="Runtime")] = None,
    amp_level: Annotated[Optional[str], typer.Option("--amp-level", help="AMP level O1 or O2.", rich_help_panel="Runtime")] = None,
    auto_scale_lr: Annotated[bool, typer.Option("--auto-scale-lr", help="Scale the LR linearly with the global batch (train.base_batch_size).", rich_help_panel="Training")] = False,
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="Data-parallel on these GPUs, e.g. 0,1,2,3: re-runs this command through `python -m paddle.distributed.launch --gpus ...`.", rich_help_panel="Runtime")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate the config, open the lists, report model size and FLOPs, and exit.")] = False,
    json_out: C.JsonOpt = False,
) -> None:
    """Train a TSN model.

    Examples:\n
      tsn train --config configs/tsn_ucf101_videos.yaml --pretrained data/ResNet50_pretrain.pdparams\n
      tsn train --config configs/tsn_demo.yaml --seg-num 7 --epochs 10\n
      tsn train --config configs/tsn_k400_frames.yaml --resume auto\n
      python -m paddle.distributed.launch --gpus 0,1,2,3 -m tsn_cli train --config configs/tsn_k400_frames.yaml\n
      python -m paddle.distributed.launch --host 127.0.0.1 --nproc_per_node 2 -m tsn_cli train ...  (CPU, gloo)\n

    Checkpoints go to --output: TSN_epoch_XXXXX.pdparams/.pdopt (+ .state.json), TSN_best.*, metrics.jsonl,
    curves.png. Ctrl-C stops at the next step and saves TSN_interrupted.* (exit 130); --resume auto continues
    exactly where it stopped. With several processes only rank 0 writes files and shows progress.
    """
    if gpus and "PADDLE_TRAINERS_NUM" not in os.environ:
        argv = relaunch_argv(sys.argv[1:], gpus)
        os.execv(sys.executable, argv)
    from tsn_cli.config import with_values

    cfg = C.build_config(
        config=config, overrides=override, seg_num=seg_num, depth=depth, target_size=target_size, num_classes=num_classes,
        pretrained=pretrained, epochs=epochs, batch_size=batch_size, lr=lr, train_list=train_list, val_list=val_list,
        data_root=data_root, output=output, device=device, workers=workers, seed=seed,
    )
    cfg = with_values(cfg, {"runtime.amp": amp, "runtime.amp_level": amp_level, "train.auto_scale_lr": True if auto_scale_lr else None}, source="option --amp")
    if weights is not None and not Path(weights).is_file():
        from tsn_cli.errors import ConfigError

        raise ConfigError(f"--weights: file not found: {weights}")
    from tsn_cli.cli.train_view import run_training

    run_training(cfg, weights=weights, resume=resume, dry_run=dry_run, json_out=json_out)

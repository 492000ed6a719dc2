"""A tiny model that really tells demo classes apart, for the timeline tests, built in seconds without training.

The backbone is a random-init ResNet-18 at 32 px; only the FC is fitted -- ridge regression of one-hot targets
on the pooled frame features of the demo's training clips (the demo classes differ in colour and shape in every
frame, which random features keep). Then it is exported like any model, and long videos are written by
concatenating held-out demo clips of different classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.helpers_deploy import SHORT, TARGET

DEMO_CLASSES = 3
DEMO_FRAMES = 16


@dataclass(frozen=True)
class DemoModel:
    """An export folder (`dir`) recognising the first demo classes, its weights/config, and the held-out clips."""

    dir: Path
    weights: Path
    cfg_file: Path
    classes: list[str]
    test_clips: dict[str, list[Path]]  # class -> clips of group g01 (never seen by the fit)


def _frames(path: Path) -> np.ndarray:
    from tsn_cli.data.video import open_source

    with open_source(str(path), "video") as src:
        return src.get(range(src.num_frames))


def build_demo_model(tmp: Path) -> DemoModel:
    """make_demo (3 classes), FC fitted on g02+ clips' frame features, exported with ONNX into `tmp/export`."""
    from tsn_cli.config import load_config, save_config
    from tsn_cli.data.transforms import TestTransform
    from tsn_cli.deploy.export import export_model
    from tsn_cli.engine import build
    from tsn_cli.model.checkpoint import save_state
    from tsn_cli.prepare.demo import make_demo
    from tsn_cli.runtime import import_paddle

    demo = make_demo(tmp / "demo", num_classes=DEMO_CLASSES, videos_per_class=8, frames=DEMO_FRAMES, seed=0)
    classes = list(demo["classes"])
    labels = tmp / "labels.txt"
    labels.write_text("".join(f"{i} {n}\n" for i, n in enumerate(classes)))
    cfg = load_config(None, ["model.depth=18", f"model.num_classes={DEMO_CLASSES}", "model.seg_num=3",
                             f"augment.target_size={TARGET}", f"augment.short_side={SHORT}",
                             f"data.label_names={labels}", "runtime.device=cpu"])
    paddle = import_paddle()
    paddle.seed(0)
    model = build.build_model(cfg)
    model.eval()
    tf = TestTransform(short_side=SHORT, target_size=TARGET, crops=1, mean=cfg.augment.mean, std=cfg.augment.std)
    feats, ys, test = [], [], {}
    for c, name in enumerate(classes):
        clips = sorted((Path(demo["video_root"]) / name).glob("*.avi"))
        test[name] = [p for p in clips if "_g01_" in p.name]
        for clip in (p for p in clips if "_g01_" not in p.name):
            x = tf(_frames(clip))[:, None]  # [T, 1, 3, t, t]: every frame on its own
            with paddle.no_grad():
                f = model.frame_features(paddle.to_tensor(x)).numpy()[:, 0]
            feats.append(f)
            ys += [c] * len(f)
    F = np.concatenate(feats).astype(np.float64)
    mu = F.mean(axis=0)
    Y = np.full((len(ys), DEMO_CLASSES), -1.0)
    Y[np.arange(len(ys)), ys] = 1.0
    Fc = F - mu
    W = np.linalg.solve(Fc.T @ Fc + 1e-2 * len(F) * np.eye(F.shape[1]) * Fc.var(), Fc.T @ Y)
    W *= 4.0 / np.abs(Fc @ W).mean()  # confident softmax: logits of a few units
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    state["head.fc.weight"] = W.astype("float32")
    state["head.fc.bias"] = (-(mu @ W)).astype("float32")
    weights = save_state(state, tmp / "demo.pdparams") or tmp / "demo.pdparams"
    save_config(cfg, tmp / "cfg.yaml")
    export_model(cfg, tmp / "demo.pdparams", tmp / "export", onnx=True)
    return DemoModel(tmp / "export", Path(weights), tmp / "cfg.yaml", classes, test)


def write_concat(path: Path, clips: list[Path], fps: int = 25) -> list[int]:
    """Write the frames of `clips` one after another as an MJPG video; returns each clip's frame count."""
    import cv2

    counts = []
    vw = None
    for clip in clips:
        frames = _frames(clip)
        if vw is None:
            h, w = frames.shape[1:3]
            vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
            assert vw.isOpened()
        for f in frames:
            vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        counts.append(len(frames))
    vw.release()
    return counts

"""Eval test helpers: a tiny demo list, a tiny config, and TSN weights CONSTRUCTED so the evaluation result is
known in advance (which video is classified as which class), plus a direct reference scorer.

Weight construction: a depth-18 TSN with a fixed random backbone; the pooled CenterCrop features F [N, 512] of
the listed videos (computed through the shared test-view path, `tsn_cli.data.views.test_clip`) are fitted by
least squares so that F @ W gives a large margin to a DESIGNED prediction per video. The eval engine must then
reproduce exactly that confusion matrix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

DEPTH, SEG, SHORT, TARGET = 18, 2, 40, 32

# Designed outcome on 11 videos (class 0 has 3, classes 1 and 2 have 4): unbalanced on purpose, so top-1
# (8/11) and mean class accuracy ((1 + 3/4 + 2/4) / 3 = 0.75) differ.
LABELS = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
PREDS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1])
CONFUSION = np.array([[3, 0, 0], [0, 3, 1], [1, 1, 2]])


def demo_records(root: Path) -> tuple[list[str], list[int], list[str]]:
    """make_demo(3 classes) -> (video paths, labels, class names) matching LABELS (group g01 clips)."""
    from tsn_cli.prepare.demo import make_demo

    info = make_demo(root, num_classes=3, videos_per_class=8, frames=12)
    classes = info["classes"]
    paths, labels = [], []
    for c, name in enumerate(classes):
        vids = sorted((Path(info["video_root"]) / name).glob("*_g01_*.avi"))
        take = 3 if c == 0 else 4
        paths += [str(v) for v in vids[:take]]
        labels += [c] * take
    assert labels == LABELS.tolist()
    return paths, labels, classes


def write_list(path: Path, paths, labels) -> Path:
    """PaddleVideo video list: 'path label' lines."""
    Path(path).write_text("".join(f"{p} {y}\n" for p, y in zip(paths, labels, strict=True)))
    return Path(path)


def write_label_names(path: Path, names) -> Path:
    """PaddleVideo label list: '0 name' lines."""
    Path(path).write_text("".join(f"{i} {n}\n" for i, n in enumerate(names)))
    return Path(path)


def config_dict(list_file, label_names, output) -> dict:
    """A tiny run config (depth 18, 32 px, seg_num 2, no workers)."""
    return {
        "model": {"depth": DEPTH, "num_classes": 3, "seg_num": SEG, "dropout": 0.3},
        "data": {"format": "video", "test_list": str(list_file), "label_names": str(label_names)},
        "augment": {"short_side": SHORT, "target_size": TARGET},
        "eval": {"batch_size": 4, "crops": 1},
        "runtime": {"workers": 0, "seed": 7, "output": str(output), "device": "cpu"},
    }


def write_config(path: Path, d: dict) -> Path:
    """Write a config dict as YAML."""
    Path(path).write_text(yaml.safe_dump(d))
    return Path(path)


def load_cfg(d: dict):
    """RunConfig from a dict."""
    from tsn_cli.config import RunConfig

    return RunConfig.model_validate(d)


def build_model(seed: int = 3, num_classes: int = 3, depth: int = DEPTH):
    """Deterministic random TSN in eval mode."""
    from tsn_cli.model.tsn import TSN
    from tsn_cli.runtime import import_paddle

    paddle = import_paddle()
    paddle.seed(seed)
    m = TSN(depth=depth, num_classes=num_classes, dropout=0.3)
    m.eval()
    return m


def reference_scores(model, paths, seg_num=SEG, crops=1, average="logits") -> np.ndarray:
    """Per-video scores computed directly: `test_clip` views -> model forward (mean over all views, then FC);
    `average='scores'`: mean over crops of softmax(model(one crop's T frames))."""
    from tsn_cli.data.views import test_clip
    from tsn_cli.runtime import import_paddle

    paddle = import_paddle()
    out = []
    with paddle.no_grad():
        for p in paths:
            clip = test_clip(p, seg_num=seg_num, crops=crops, short_side=SHORT, target_size=TARGET)
            assert clip.shape == (crops * seg_num, 3, TARGET, TARGET)
            x = paddle.to_tensor(clip)
            if average == "logits":
                out.append(model(x.unsqueeze(0)).numpy()[0])
            else:
                per = model(x.reshape([crops, seg_num, 3, TARGET, TARGET])).numpy().astype(np.float64)
                e = np.exp(per - per.max(axis=1, keepdims=True))
                out.append((e / e.sum(axis=1, keepdims=True)).mean(axis=0))
    return np.stack(out)


def construct_weights(paths, out_file: Path, preds=PREDS, margin: float = 20.0) -> Path:
    """Fit the FC so the 1-view CenterCrop logits put `preds` first by about `margin`; save PaddleVideo-style."""
    from tsn_cli.model.checkpoint import save_state
    from tsn_cli.runtime import import_paddle

    paddle = import_paddle()
    model = build_model()
    from tsn_cli.data.views import test_clip

    feats = []
    with paddle.no_grad():
        for p in paths:
            clip = paddle.to_tensor(test_clip(p, seg_num=SEG, crops=1, short_side=SHORT, target_size=TARGET))
            feats.append(model.frame_features(clip.unsqueeze(0)).mean(axis=1).numpy()[0])
    f = np.stack(feats).astype(np.float64)
    target = np.full((len(paths), 3), -margin / 2)
    target[np.arange(len(paths)), preds] = margin / 2
    w, *_ = np.linalg.lstsq(f, target, rcond=None)
    model.head.fc.weight.set_value(w.astype(np.float32))
    model.head.fc.bias.set_value(np.zeros(3, np.float32))
    got = reference_scores(model, paths)
    assert (got.argmax(1) == preds).all(), "constructed weights do not give the designed predictions"
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    save_state(state, out_file)
    return Path(out_file)


def corrupt_video(path: Path) -> Path:
    """A file with an .avi name and garbage content (a RIFF header then noise)."""
    Path(path).write_bytes(b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(range(256)) * 8)
    return Path(path)


def make_case(root):
    """The shared eval fixture data under `root`: demo videos, their list and label names, constructed weights
    with a known result, and the config dict that points at them."""
    paths, labels, names = demo_records(root / "demo")
    lst = write_list(root / "test.list", paths, labels)
    lbl = write_label_names(root / "labels.txt", names)
    weights = construct_weights(paths, root / "TSN_constructed.pdparams")
    return {"root": root, "paths": paths, "labels": labels, "names": names, "list": lst, "labels_file": lbl,
            "weights": weights, "cfg_dict": config_dict(lst, lbl, root / "out")}

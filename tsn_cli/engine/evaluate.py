"""Evaluation: score every video of a list with test-time views, combine views, compute metrics.

Views (seg_num x crops frames per video) run through the backbone in chunks of `max_views_per_batch` frames,
so 25x10 = 250 frames per video never need to sit in one batch; chunked and unchunked give the same logits
because the TSN head averages pooled features before its (linear) classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tsn_cli.engine import metrics as M


def clip_logits(model, clips, crops: int, max_frames: int = 64, average: str = "logits"):
    """Video-level scores for a batch of test clips.

    clips: paddle tensor [N, crops*T, 3, H, W] (crop-major views). Returns a numpy [N, num_classes] array:
    the mean of per-view logits (`average='logits'`, PaddleVideo's way) or of per-view softmax scores.
    """
    from tsn_cli.engine.device import import_paddle

    paddle = import_paddle()
    n, frames = int(clips.shape[0]), int(clips.shape[1])
    flat = clips.reshape([n * frames] + list(clips.shape[2:]))
    feats = []
    step = max(1, int(max_frames))
    with paddle.no_grad():
        for start in range(0, n * frames, step):
            chunk = flat[start : start + step].unsqueeze(1)  # [chunk, 1, 3, H, W]
            feats.append(model.frame_features(chunk)[:, 0])
        feat = paddle.concat(feats, axis=0).reshape([n, crops, frames // crops, -1])
        if average == "scores":
            per_view = model.classify(feat.mean(axis=2).reshape([n * crops, -1])).reshape([n, crops, -1])
            return M.softmax(per_view.numpy(), axis=-1).mean(axis=1)
        return model.classify(feat.mean(axis=[1, 2])).numpy()


@dataclass
class EvalResult:
    """Everything `tsn eval` reports."""

    scores: np.ndarray  # [num_scored, C] (logits or mean softmax, see `average`)
    labels: np.ndarray  # [num_scored]
    paths: list[str]
    class_names: list[str]
    unreadable: list[dict] = field(default_factory=list)  # {"path", "reason"}
    average: str = "logits"

    @property
    def num_videos(self) -> int:
        return int(len(self.labels))

    def confusion(self) -> np.ndarray:
        return M.confusion_matrix(self.labels, self.scores.argmax(axis=1) if len(self.labels) else np.zeros(0, int), len(self.class_names))

    def summary(self) -> dict:
        """The JSON document of `tsn eval --json`."""
        cm = self.confusion()
        acc = M.per_class_accuracy(cm)
        return {
            "top1": M.topk_accuracy(self.scores, self.labels, 1),
            "top5": M.topk_accuracy(self.scores, self.labels, 5),
            "mean_class_accuracy": M.mean_class_accuracy(cm),
            "num_videos": self.num_videos,
            "per_class": [
                {"class_id": i, "label": self.class_names[i], "accuracy": None if np.isnan(a) else float(a), "count": int(cm[i].sum())}
                for i, a in enumerate(acc)
            ],
            "unreadable": self.unreadable,
        }


def score_loader(model, loader, crops: int, max_frames: int, average: str, on_batch: Optional[Callable[[int], None]] = None):
    """Run a test loader; returns (scores, labels, indices, ok) numpy arrays over every sample yielded."""
    model.eval()
    all_scores, all_labels, all_idx, all_ok = [], [], [], []
    for batch in loader:
        clips, labels, idx, ok = batch[:4]
        all_scores.append(clip_logits(model, clips, crops, max_frames, average))
        all_labels.append(np.asarray(labels).reshape(-1))
        all_idx.append(np.asarray(idx).reshape(-1))
        all_ok.append(np.asarray(ok).reshape(-1))
        if on_batch:
            on_batch(int(clips.shape[0]))
    if not all_scores:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
    return np.concatenate(all_scores), np.concatenate(all_labels), np.concatenate(all_idx), np.concatenate(all_ok).astype(bool)


def _probe_reason(record, fmt: str, frame_template: str) -> str:
    """Why a sample could not be read (re-opened in this process; workers only pass a flag)."""
    from tsn_cli.data.video import open_source
    from tsn_cli.errors import DecodeError

    try:
        src = open_source(record, fmt, frame_template=frame_template)
        src.get([0, max(0, src.num_frames - 1)])
    except DecodeError as exc:
        return exc.reason
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a reason, not a crash
        return f"{type(exc).__name__}: {exc}"
    return "could not be decoded"


def evaluate(
    cfg,
    weights: Path | str,
    list_file: Optional[Path] = None,
    *,
    seg_num: Optional[int] = None,
    crops: Optional[int] = None,
    average: Optional[str] = None,
    max_views_per_batch: Optional[int] = None,
    on_start: Optional[Callable[[int], None]] = None,
    on_batch: Optional[Callable[[int], None]] = None,
    on_message: Optional[Callable[[str], None]] = None,
) -> EvalResult:
    """Evaluate `weights` on a list (default: `data.test_list`, else `data.val_list`) with test-time views."""
    from tsn_cli.data.dataset import build_loader
    from tsn_cli.engine import build
    from tsn_cli.engine.device import import_paddle, resolve_device
    from tsn_cli.model.checkpoint import load_weights

    import_paddle(cfg.runtime.threads)
    resolve_device(cfg.runtime.device)
    crops = crops or cfg.eval.crops
    seg_num = seg_num or cfg.eval.seg_num or cfg.model.seg_num
    average = average or cfg.eval.average
    max_frames = max_views_per_batch or cfg.eval.max_views_per_batch
    list_file = list_file or cfg.data.test_list or cfg.data.val_list
    read = build.read_records(cfg, list_file, "--list / data.test_list")
    for msg in read.bad_lines:
        if on_message:
            on_message(f"skipped {msg}")
    model = build.build_model(cfg)
    report = load_weights(model, weights, part="full")
    if on_message:
        on_message(f"weights {weights}: {report.summary()}")
    model.eval()
    ds = build.eval_dataset(cfg, read.records, seg_num=seg_num, crops=crops)
    loader = build_loader(ds, batch_size=cfg.eval.batch_size, shuffle=False, workers=cfg.runtime.workers, seed=cfg.runtime.seed, drop_last=False)
    if on_start:
        on_start(len(read.records))
    scores, labels, idx, ok = score_loader(model, loader, crops, max_frames, average, on_batch)
    unreadable = [
        {"path": read.records[int(i)].path, "reason": _probe_reason(read.records[int(i)], cfg.data.format, cfg.data.frame_template)}
        for i in idx[~ok]
    ]
    keep = ok
    return EvalResult(
        scores=scores[keep],
        labels=labels[keep].astype(np.int64),
        paths=[read.records[int(i)].path for i in idx[keep]],
        class_names=build.label_names(cfg),
        unreadable=unreadable,
        average=average,
    )


def write_reports(result: EvalResult, out_dir: Path) -> list[Path]:
    """Confusion matrix (CSV + PNG) and a per-video CSV (path, label, prediction, top-5, score) in `out_dir`."""
    import csv
    import io

    from tsn_cli.fsutil import atomic_path, atomic_write_text
    from tsn_cli.ui import plain

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [plain(n) for n in result.class_names]
    cm = result.confusion()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["true\\pred"] + names)
    for i, row in enumerate(cm):
        w.writerow([names[i]] + [int(v) for v in row])
    atomic_write_text(out_dir / "confusion_matrix.csv", buf.getvalue())

    probs = result.scores if result.average == "scores" else M.softmax(result.scores, axis=1)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "label", "prediction", "correct", "top5", "score"])
    k = min(5, probs.shape[1]) if len(probs) else 0
    for path, label, p in zip(result.paths, result.labels, probs):
        top = np.argsort(-p)[:k]
        w.writerow([plain(path), names[int(label)], names[int(top[0])], int(top[0] == label), " ".join(names[int(t)] for t in top), f"{float(p[top[0]]):.6f}"])
    atomic_write_text(out_dir / "predictions.csv", buf.getvalue())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    fig, ax = plt.subplots(figsize=(min(24, 3 + 0.35 * n), min(24, 3 + 0.35 * n)))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 40:
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row-normalised)")
    fig.tight_layout()
    with atomic_path(out_dir / "confusion_matrix.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return [out_dir / "confusion_matrix.csv", out_dir / "confusion_matrix.png", out_dir / "predictions.csv"]


def save_scores(result: EvalResult, path: Path) -> None:
    """Every video's score vector (+ labels and paths) as .npz, for later fusion."""
    from tsn_cli.fsutil import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, scores=result.scores, labels=result.labels, paths=np.array(result.paths), average=result.average)

"""Evaluation: score every video of a list with test-time views, combine views, compute metrics.

Views (seg_num x crops frames per video) run through the backbone in chunks of `max_views_per_batch` frames,
so 25x10 = 250 frames per video never need to sit in one backbone batch; chunked and unchunked give the same
logits (up to float summation order) because the TSN head averages pooled features before its linear classifier
-- the mean of the per-view logits equals the classifier applied to the mean feature, which is what PaddleVideo's
head computes over all 250 views.

Multi-process: under `paddle.distributed.launch` each rank scores its shard (the loader's distributed sampler),
then scores/labels/indices/ok flags are all-gathered and de-duplicated by list index (the sampler pads the last
shard by repeating samples), so the numbers equal a single-process run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tsn_cli.engine import metrics as M


def clip_logits(model, clips, crops: int, max_frames: int = 64, average: str = "logits") -> np.ndarray:
    """Video-level scores for a batch of test clips.

    clips: paddle tensor [N, crops*T, 3, H, W] (crop-major views). The frames go through the backbone in chunks
    of at most `max_frames`; only the pooled features are kept. Returns a numpy [N, num_classes] array: the mean
    of per-view logits (`average='logits'`, PaddleVideo's way: the FC of the mean feature) or the mean of the
    per-crop softmax scores (`average='scores'`; a crop's score is its T-segment TSN prediction).
    """
    from tsn_cli.runtime import import_paddle

    paddle = import_paddle()
    n, frames = int(clips.shape[0]), int(clips.shape[1])
    if frames % crops:
        raise ValueError(f"clip has {frames} frames, not a multiple of crops={crops}")
    flat = clips.reshape([n * frames] + list(clips.shape[2:]))
    feats = []
    step = max(1, int(max_frames))
    with paddle.no_grad():
        for start in range(0, n * frames, step):
            chunk = flat[start : start + step].unsqueeze(1)  # [chunk, 1, 3, H, W]: one frame per "clip"
            feats.append(model.frame_features(chunk)[:, 0])
        feat = paddle.concat(feats, axis=0).reshape([n, crops, frames // crops, -1])
        if average == "scores":
            per_crop = model.classify(feat.mean(axis=2).reshape([n * crops, -1])).reshape([n, crops, -1])
            return M.softmax(per_crop.numpy(), axis=-1).mean(axis=1)
        return model.classify(feat.mean(axis=[1, 2])).numpy().astype(np.float32)


@dataclass
class EvalResult:
    """Everything `tsn eval` reports: scores of the readable videos (in list order), the unreadable ones and the
    scored ones that decode only partly (`warnings`)."""

    scores: np.ndarray  # [num_scored, C] (logits or mean softmax, see `average`)
    labels: np.ndarray  # [num_scored]
    paths: list[str]
    class_names: list[str]
    unreadable: list[dict] = field(default_factory=list)  # {"path", "reason", "line"}
    warnings: list[dict] = field(default_factory=list)  # partly decodable, scored: {"path", "warning", "line"}
    average: str = "logits"
    indices: Optional[np.ndarray] = None  # list positions of the scored videos
    is_main: bool = True  # False on non-zero ranks of a distributed run (they print nothing)
    protocol: dict = field(default_factory=dict)
    list_file: str = ""  # the list that was scored
    # what scored it: {"model": export folder or None, "weights": checkpoint or None, "backend", "precision"}
    source: dict = field(default_factory=dict)
    speed: dict = field(default_factory=dict)  # eval --model: {"inference_frames_per_s"} (not in the summary)

    @property
    def num_videos(self) -> int:
        """Videos scored (unreadable ones excluded)."""
        return int(len(self.labels))

    @property
    def predictions(self) -> np.ndarray:
        """Top-1 class per scored video."""
        return self.scores.argmax(axis=1) if len(self.labels) else np.zeros(0, np.int64)

    @property
    def top1(self) -> Optional[float]:
        """Top-1 accuracy over the scored videos (None when none was scored)."""
        return M.topk_accuracy(self.scores, self.labels, 1) if self.num_videos else None

    @property
    def top5(self) -> Optional[float]:
        """Top-5 accuracy over the scored videos (None when none was scored)."""
        return M.topk_accuracy(self.scores, self.labels, 5) if self.num_videos else None

    @property
    def mean_class_accuracy(self) -> Optional[float]:
        """Mean of the per-class accuracies (None when no video was scored)."""
        return M.mean_class_accuracy(self.confusion()) if self.num_videos else None

    def confusion(self) -> np.ndarray:
        """Confusion matrix [true, predicted] over all classes."""
        return M.confusion_matrix(self.labels, self.predictions, len(self.class_names))

    def summary(self) -> dict:
        """The JSON document of `tsn eval --json`: list, model, weights, backend, precision, top1, top5,
        mean_class_accuracy, num_videos, per_class, unreadable, warnings (+ protocol). `model` (an export folder)
        or `weights` (a checkpoint, backend "dygraph") is null. Per-class accuracy is null for classes without
        videos; the metrics are null when no video was scored."""
        cm = self.confusion()
        acc = M.per_class_accuracy(cm)
        scored = self.num_videos > 0
        return {
            "list": self.list_file,
            "model": self.source.get("model"),
            "weights": self.source.get("weights"),
            "backend": self.source.get("backend", "dygraph"),
            "precision": self.source.get("precision", "fp32"),
            "top1": self.top1,
            "top5": self.top5,
            "mean_class_accuracy": M.mean_class_accuracy(cm) if scored else None,
            "num_videos": self.num_videos,
            "per_class": [
                {
                    "class_id": i,
                    "label": self.class_names[i],
                    "accuracy": None if np.isnan(a) else float(a),
                    "count": int(cm[i].sum()),
                }
                for i, a in enumerate(acc)
            ],
            "unreadable": list(self.unreadable),
            "warnings": list(self.warnings),
            "protocol": dict(self.protocol),
        }


def score_loader(
    model,
    loader,
    crops: int,
    max_frames: int,
    average: str,
    num_classes: int,
    on_batch: Optional[Callable[[int], None]] = None,
):
    """Run a test loader; returns (scores [M, C], labels, indices, ok) numpy arrays over every sample yielded.
    `ok` is the dataset's flag: 0 unreadable (its scores are meaningless), 1 read, 2 read from a partly
    decodable video."""
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
        empty = np.zeros(0, np.int64)
        return np.zeros((0, num_classes), np.float32), empty, empty, empty
    return (
        np.concatenate(all_scores).astype(np.float32),
        np.concatenate(all_labels).astype(np.int64),
        np.concatenate(all_idx).astype(np.int64),
        np.concatenate(all_ok).astype(np.int64),
    )


def validate(model, cfg, records) -> tuple[dict, list[str]]:
    """Validation during training: 1 view, centre crop, the config's seg_num. Returns the epoch row's top-1/top-5
    over the readable videos of `records` (``val_unreadable`` counts the others) and the unreadable paths."""
    from tsn_cli.data.dataset import build_loader
    from tsn_cli.engine import build

    ds = build.eval_dataset(cfg, records, seg_num=cfg.model.seg_num, crops=1)
    loader = build_loader(
        ds,
        batch_size=cfg.eval.batch_size,
        shuffle=False,
        workers=cfg.runtime.workers,
        seed=cfg.runtime.seed,
        drop_last=False,
    )
    scores, labels, idx, ok = score_loader(
        model, loader, 1, cfg.eval.max_views_per_batch, "logits", num_classes=cfg.model.num_classes
    )
    read = ok > 0  # 0 unreadable; 1 and 2 (partly decodable, scored from what decodes) count
    unreadable = [records[int(i)].path for i in idx[~read]]
    scores, labels = scores[read], labels[read]
    return {
        "val_top1": M.topk_accuracy(scores, labels, 1),
        "val_top5": M.topk_accuracy(scores, labels, 5),
        "val_videos": int(len(labels)),
        "val_unreadable": int((~read).sum()),
    }, unreadable


def gather_shards(scores, labels, idx, ok, world: int):
    """All-gather every rank's (scores, labels, indices, ok) and keep one row per list index, in list order.

    The distributed sampler pads the last shard by repeating samples; the duplicates carry the same index and
    are dropped here, so the result equals a single-process run.
    """
    if world > 1:
        from tsn_cli.runtime import import_paddle

        paddle = import_paddle()
        parts: list = []
        paddle.distributed.all_gather_object(parts, (scores, labels, idx, ok))
        scores = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        idx = np.concatenate([p[2] for p in parts])
        ok = np.concatenate([p[3] for p in parts])
    _, first = np.unique(idx, return_index=True)  # sorted by index; first occurrence of each
    return scores[first], labels[first], idx[first], ok[first]


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
    """Evaluate `weights` on a list (default: `data.test_list`, else `data.val_list`) with test-time views.

    A label outside the model's classes is a `DataError` naming the line (the list is another dataset's).

    Protocol: `seg_num` segments (default `eval.seg_num`, else the model's `seg_num`) x `crops` (1 CenterCrop,
    3 ThreeCrop, 10 TenCrop) at `augment.target_size`; views combined by `average` ('logits' | 'scores').
    Unreadable videos are not scored and not replaced: they come back in `EvalResult.unreadable` with the reason.
    Partly decodable (truncated) videos are scored from the frames that decode and listed in `EvalResult.warnings`.
    Under `paddle.distributed.launch` the list is sharded over the ranks and the results gathered (every rank
    returns the full result; `is_main` marks rank 0).
    """
    from tsn_cli.engine import build
    from tsn_cli.model.checkpoint import load_weights
    from tsn_cli.runtime import import_paddle, resolve_device

    paddle = import_paddle(cfg.runtime.threads)  # before any module that imports paddle: it sets the threads
    from tsn_cli.data.dataset import build_loader

    resolve_device(cfg.runtime.device)
    from tsn_cli.runtime import dist_info

    world, rank = dist_info()
    if world > 1:
        paddle.distributed.init_parallel_env()
        world, rank = int(paddle.distributed.get_world_size()), int(paddle.distributed.get_rank())
    say = on_message if (on_message and rank == 0) else (lambda msg: None)
    crops = crops or cfg.eval.crops
    seg_num = seg_num or cfg.test_seg_num
    average = average or cfg.eval.average
    if average not in ("logits", "scores"):
        from tsn_cli.errors import ConfigError

        raise ConfigError(f"--average: must be 'logits' or 'scores', got {average!r}")
    max_frames = max_views_per_batch or cfg.eval.max_views_per_batch
    list_file = list_file or cfg.data.test_list or cfg.data.val_list
    read = build.read_records(cfg, list_file, "data.test_list", strict_labels=True)
    for msg in read.bad_lines:
        say(f"skipped {msg}")
    model = build.build_model(cfg)
    report = load_weights(model, weights, part="full", strict=True)
    say(f"weights {weights}: {report.summary()}")
    model.eval()
    ds = build.eval_dataset(cfg, read.records, seg_num=seg_num, crops=crops)
    views = seg_num * crops
    # A loader batch holds batch_size x views frames (150 MB per video at 25x10x224): keep it near the backbone
    # chunk so 250-view tests do not pile up gigabytes of input; results do not depend on the batch size.
    batch_size = max(1, min(cfg.eval.batch_size, max(1, max_frames // views)))
    loader = build_loader(
        ds,
        batch_size=batch_size,
        shuffle=False,
        workers=cfg.runtime.workers,
        seed=cfg.runtime.seed,
        drop_last=False,
        distributed=world > 1,
    )
    if on_start and rank == 0:
        on_start(len(ds.records) if world == 1 else -(-len(ds.records) // world))
    scores, labels, idx, ok = score_loader(
        model, loader, crops, max_frames, average, cfg.model.num_classes, on_batch if rank == 0 else None
    )
    scores, labels, idx, flags = gather_shards(scores, labels, idx, ok, world)
    ok = flags > 0
    unreadable, warnings = [], []
    for i in idx[~ok].tolist() if rank == 0 else []:  # only rank 0 reports
        rec = read.records[int(i)]
        # dataset.reason repeats the same deterministic load in this process (workers only pass a flag back)
        unreadable.append({"path": rec.path, "reason": ds.reason(int(i)), "line": getattr(rec, "line", None)})
    for i in idx[flags == 2].tolist() if rank == 0 else []:
        rec = read.records[int(i)]
        warnings.append({"path": rec.path, "warning": ds.warning(int(i)), "line": getattr(rec, "line", None)})
    return EvalResult(
        scores=scores[ok],
        labels=labels[ok].astype(np.int64),
        paths=[read.records[int(i)].path for i in idx[ok]],
        class_names=build.label_names(cfg),
        unreadable=unreadable,
        warnings=warnings,
        average=average,
        indices=idx[ok],
        is_main=rank == 0,
        protocol={
            "seg_num": seg_num,
            "crops": crops,
            "average": average,
            "target_size": cfg.augment.target_size,
            "short_side": cfg.augment.short_side,
            "max_views_per_batch": max_frames,
            "processes": world,
        },
        list_file=os.path.abspath(list_file),
        source={"model": None, "weights": str(weights), "backend": "dygraph", "precision": "fp32"},
    )


def write_reports(result: EvalResult, out_dir: Path) -> list[Path]:
    """Confusion matrix (CSV + PNG) and a per-video CSV (path, label, prediction, top-5, score) in `out_dir`."""
    import csv
    import io

    from tsn_cli.fsutil import atomic_write_text
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
    for path, label, p in zip(result.paths, result.labels, probs, strict=False):
        top = np.argsort(-p)[:k]
        w.writerow(
            [
                plain(path),
                names[int(label)],
                names[int(top[0])],
                int(top[0] == label),
                " ".join(names[int(t)] for t in top),
                f"{float(p[top[0]]):.6f}",
            ]
        )
    atomic_write_text(out_dir / "predictions.csv", buf.getvalue())

    from tsn_cli.engine.confusion import write_confusion_png

    write_confusion_png(cm, names, out_dir / "confusion_matrix.png")
    return [out_dir / "confusion_matrix.csv", out_dir / "confusion_matrix.png", out_dir / "predictions.csv"]


def save_scores(result: EvalResult, path: Path) -> None:
    """Every scored video's score vector as .npz, for later fusion (loads with `numpy.load`, no pickle):
    `scores` [N, C] float32 (mean logits, or mean softmax with --average scores), `labels` [N], `indices` [N]
    (line order in the list), `paths` [N] str, `class_names` [C] str, `average` str."""
    from tsn_cli.fsutil import atomic_path

    idx = result.indices if result.indices is not None else np.arange(result.num_videos)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                scores=result.scores.astype(np.float32),
                labels=result.labels.astype(np.int64),
                indices=np.asarray(idx, np.int64),
                paths=np.array(result.paths, dtype=str),
                class_names=np.array(result.class_names, dtype=str),
                average=np.array(result.average),
            )

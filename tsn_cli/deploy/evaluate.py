"""`tsn eval --model`: score a list with an exported model on any backend, with `tsn eval --weights`'s protocol.

The views are the ones eval and predict share (`tsn_cli.data.views.test_clip` through `Predictor.preprocess`), so
an export scores like its checkpoint: `average='logits'` runs all views through the graph (whose output is the
mean over views, i.e. the FC of the mean feature, as the dygraph eval computes it); `average='scores'` runs each
crop's segments as one clip and averages the crops' softmax. Decoding runs in worker processes, overlapping
inference (`Predictor.prepared`, `tsn_cli.deploy.prefetch`). The result is an `EvalResult`, so metrics, tables,
`--json`, reports and saved scores are eval's own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tsn_cli.engine import metrics as M
from tsn_cli.engine.evaluate import EvalResult
from tsn_cli.errors import ConfigError


def evaluate_export(
    cfg,
    model_dir: Path | str,
    list_file: Optional[Path] = None,
    *,
    backend: str = "paddle",
    precision: str = "fp32",
    seg_num: Optional[int] = None,
    crops: Optional[int] = None,
    average: Optional[str] = None,
    batch_views: Optional[int] = None,
    threads: Optional[int] = None,
    decode_workers: Optional[int] = None,
    on_start: Optional[Callable[[int], None]] = None,
    on_batch: Optional[Callable[[int], None]] = None,
    on_message: Optional[Callable[[str], None]] = None,
) -> EvalResult:
    """Evaluate the `tsn export` folder `model_dir` on a list (default: `cfg`'s test list, else val list).

    `cfg` gives the list's settings (format, data_root, suffix); the model's classes, views and preprocessing
    come from the folder's tsn.yaml, the protocol (`seg_num`, `crops`, `average`) from tsn.yaml unless given.
    A label outside the model's classes is a `DataError` naming the line. Unreadable videos are listed in
    `EvalResult.unreadable`, partly decodable ones scored and listed in `warnings`, as `tsn eval --weights` does.
    `decode_workers`: processes decoding the next videos during inference (default: sized to the free cores;
    0: decode in this process, one after the other); the scores do not depend on it.
    """
    from tsn_cli.config import with_values
    from tsn_cli.deploy.artifact import read_meta
    from tsn_cli.deploy.predict import predictor_from_export
    from tsn_cli.engine import build

    say = on_message or (lambda msg: None)
    meta = read_meta(model_dir)
    cfg = with_values(cfg, {"model.num_classes": int(meta["num_classes"])})
    average = average or meta.get("average") or "logits"
    if average not in ("logits", "scores"):
        raise ConfigError(f"--average: must be 'logits' or 'scores', got {average!r}")
    list_file = list_file or cfg.data.test_list or cfg.data.val_list
    read = build.read_records(cfg, list_file, "data.test_list", strict_labels=True)
    for msg in read.bad_lines:
        say(f"skipped {msg}")
    pred = predictor_from_export(
        model_dir,
        backend=backend,
        precision=precision,
        threads=threads,
        seg_num=seg_num,
        crops=crops,
        batch_views=batch_views,
        on_message=say,
        fmt=cfg.data.format,
        frame_template=cfg.data.frame_template,
        decode_workers=decode_workers,
    )
    names = list(meta.get("label_names") or [])
    n = int(meta["num_classes"])
    names = (names + [str(i) for i in range(len(names), n)])[:n]
    if on_start:
        on_start(len(read.records))
    scores, kept, unreadable, warnings = [], [], [], []
    infer_s, frames = 0.0, 0
    items = pred.prepared(read.records)
    try:
        for i, (rec, x, _timings, warns, error) in enumerate(items):
            if error is not None:
                unreadable.append({"path": rec.path, "reason": error, "line": getattr(rec, "line", None)})
            else:
                t0 = time.perf_counter()
                scores.append(_video_scores(pred, x, average))
                infer_s += time.perf_counter() - t0
                frames += int(x.shape[1])
                kept.append(i)
                if warns:
                    warnings.append({"path": rec.path, "warning": "; ".join(warns), "line": getattr(rec, "line", None)})
            if on_batch:
                on_batch(1)
    finally:
        items.close()
    idx = np.asarray(kept, np.int64)
    return EvalResult(
        scores=np.stack(scores).astype(np.float32) if scores else np.zeros((0, n), np.float32),
        labels=np.asarray([read.records[i].label for i in kept], np.int64),
        paths=[read.records[i].path for i in kept],
        class_names=names,
        unreadable=unreadable,
        warnings=warnings,
        average=average,
        indices=idx,
        protocol={
            "seg_num": pred.seg_num,
            "crops": pred.crops,
            "average": average,
            "target_size": meta["target_size"],
            "short_side": meta["short_side"],
            "max_views_per_batch": pred.batch_views,
            "processes": 1,
        },
        list_file=os.path.abspath(list_file),
        source={"model": str(model_dir), "weights": None, "backend": pred.backend, "precision": precision},
        speed={"inference_frames_per_s": frames / infer_s if infer_s > 0 else None},
    )


def _video_scores(pred, x: np.ndarray, average: str) -> np.ndarray:
    """One video's score vector from its [1, crops*seg_num, 3, H, W] views (crop-major)."""
    if average == "logits":
        return pred.infer(x)
    seg = x.shape[1] // pred.crops
    per_crop = np.stack([pred.infer(x[:, c * seg : (c + 1) * seg]) for c in range(pred.crops)])
    return M.softmax(per_crop, axis=-1).mean(axis=0)

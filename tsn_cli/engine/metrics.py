"""Classification metrics from score matrices: top-k, mean class accuracy, per-class accuracy, confusion matrix.

All vectorised numpy (argsort / bincount), usable on logits or softmax scores.
"""

from __future__ import annotations

import numpy as np


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean per row: is the label among the k highest scores? (k is clipped to the number of classes)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return (top == labels.reshape(-1, 1)).any(axis=1)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose label is in the top k."""
    if len(labels) == 0:
        return 0.0
    return float(topk_correct(np.asarray(scores), np.asarray(labels), k).mean())


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """[true, predicted] counts."""
    idx = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(preds, dtype=np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall per class; NaN for classes with no samples."""
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


def mean_class_accuracy(cm: np.ndarray) -> float:
    """Mean of per-class accuracy over the classes that have samples."""
    acc = per_class_accuracy(cm)
    return float(np.nanmean(acc)) if np.isfinite(acc).any() else 0.0


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)

"""The confusion-matrix PNG of `tsn eval --output`: row-normalised colours with a colour scale, and the counts
written in the cells while there are few enough classes to read them.

matplotlib is imported lazily with the non-interactive Agg backend, as in `curves.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_LABELLED = 40  # class names on the axes up to this many classes
MAX_COUNTS = 30  # counts in the cells up to this many classes


def confusion_figure(cm: np.ndarray, names: list[str]):
    """A matplotlib Figure of the confusion matrix `cm` [true, predicted] (rows normalised to 0..1 for the
    colours, with a colour bar; raw counts in the cells for up to MAX_COUNTS classes)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    n = len(names)
    side = min(24, 3.5 + 0.35 * n)
    fig = Figure(figsize=(side + 1.2, side), dpi=100)
    ax = fig.subplots()
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= MAX_LABELLED:
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
    if n <= MAX_COUNTS:
        size = 8 if n <= 15 else 6
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    # white on dark cells, black on light ones
                    ax.text(
                        j,
                        i,
                        str(int(cm[i, j])),
                        ha="center",
                        va="center",
                        fontsize=size,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        "confusion matrix (colour: row-normalised; numbers: videos)"
        if n <= MAX_COUNTS
        else "confusion matrix (row-normalised)"
    )
    fig.tight_layout()
    return fig


def write_confusion_png(cm: np.ndarray, names: list[str], target: str | Path) -> Path:
    """Draw `confusion_figure` into `target` (written atomically)."""
    from tsn_cli.fsutil import atomic_path

    target = Path(target)
    fig = confusion_figure(cm, names)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return target

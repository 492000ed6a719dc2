"""Training curves: loss, top-1 (train and val) and LR per epoch as a PNG, redrawn after every epoch.

matplotlib is imported lazily with the non-interactive Agg backend (no display needed); the PNG is written
through `atomic_path`, so a viewer never sees a half-written image.
"""

from __future__ import annotations

import json
from pathlib import Path

from tsn_cli.errors import TsnError


def read_metrics(path: str | Path) -> list[dict]:
    """Epoch rows of a metrics.jsonl, one per epoch (a later row for the same epoch -- a resumed run -- wins).

    Unreadable lines (a torn last line after a kill) are skipped.
    """
    rows: dict[int, dict] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows[row["epoch"]] = row
    return [rows[k] for k in sorted(rows)]


def curves_figure(rows: list[dict]):
    """A matplotlib Figure with loss / top-1 / LR against the epoch (whole epochs on the x axis)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise TsnError(f"matplotlib is not available ({exc})") from None

    ep = [r["epoch"] for r in rows]
    fig = Figure(figsize=(11, 3.2), dpi=100)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(ep, [r.get("loss") for r in rows], marker="o", ms=3, label="train")
    ax_loss.set_title("loss")
    ax_acc.plot(ep, [r.get("top1") for r in rows], marker="o", ms=3, label="train top-1")
    val = [(r["epoch"], r["val_top1"]) for r in rows if isinstance(r.get("val_top1"), (int, float))]
    if val:
        ax_acc.plot([v[0] for v in val], [v[1] for v in val], marker="s", ms=4, label="val top-1")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_title("top-1")
    ax_acc.legend(loc="lower right", fontsize=8)
    ax_lr.plot(ep, [r.get("lr") for r in rows], marker="o", ms=3, drawstyle="steps-post")
    if all(isinstance(r.get("lr"), (int, float)) and r["lr"] > 0 for r in rows):
        ax_lr.set_yscale("log")
    ax_lr.set_title("learning rate")
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.25, 1.5 ticks
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_curves(rows: list[dict], target: str | Path) -> Path | None:
    """Draw `curves_figure` into `target` (PNG); None when there is nothing to draw."""
    if not rows:
        return None
    from tsn_cli.fsutil import atomic_path

    fig = curves_figure(rows)
    target = Path(target)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    return target

"""The files of `tsn predict --timeline --output DIR`: timeline.csv (one row per window, every class's
probability), timeline.json (the --json document) and timeline.png (a class-probability strip over time)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from tsn_cli.fsutil import atomic_path, atomic_write_text, ensure_dir

# Classes drawn in the strip: those that are ever a window's top class, plus the strongest others up to this.
PLOT_CLASSES = 12


def write_timeline_files(tl, out_dir: Path | str, top_k: int = 5) -> list[Path]:
    """Write timeline.csv, timeline.json and timeline.png for `tl` (a `Timeline`) into `out_dir`."""
    from tsn_cli.ui import plain

    out = ensure_dir(out_dir)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = [plain(tl.label(c)) for c in range(tl.probs.shape[1])]
    w.writerow(["start_s", "end_s", "start_frame", "end_frame", "class_id", "label", "score", *names])
    for s, e, p in zip(tl.starts, tl.ends, tl.probs, strict=True):
        c = int(p.argmax())
        w.writerow([tl.seconds(s), tl.seconds(e), int(s), int(e), c, names[c], f"{p[c]:.6f}", *(f"{v:.6f}" for v in p)])
    atomic_write_text(out / "timeline.csv", buf.getvalue())
    atomic_write_text(out / "timeline.json", json.dumps(tl.to_json(top_k), indent=2) + "\n")
    plot_timeline(tl, out / "timeline.png")
    return [out / "timeline.csv", out / "timeline.json", out / "timeline.png"]


def plot_timeline(tl, path: Path) -> None:
    """A labelled heat strip: one row per class (probability over time), segments as bars above it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tsn_cli.ui import plain

    probs = tl.probs
    tops = list(dict.fromkeys(int(c) for c in probs.argmax(axis=1)))
    rest = [int(c) for c in np.argsort(-probs.max(axis=0)) if int(c) not in tops]
    shown = (tops + rest)[: max(PLOT_CLASSES, len(tops))]
    lo, hi = tl.own_bounds()
    scale = (1.0 / tl.fps) if tl.fps else 1.0
    unit = "seconds" if tl.fps else "frames"
    x_edges = np.concatenate([lo, hi[-1:]]) * scale
    fig_h = 1.6 + 0.32 * len(shown)
    fig, (ax_seg, ax) = plt.subplots(
        2, 1, figsize=(12, fig_h), sharex=True, gridspec_kw={"height_ratios": [0.9, max(1.0, 0.32 * len(shown))]}
    )
    mesh = ax.pcolormesh(x_edges, np.arange(len(shown) + 1), probs[:, shown].T, cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(np.arange(len(shown)) + 0.5)
    ax.set_yticklabels([plain(tl.label(c)) for c in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"time ({unit})")
    fig.colorbar(mesh, ax=[ax_seg, ax], fraction=0.025, pad=0.01, label="probability")
    cmap = plt.get_cmap("tab20")
    for seg in tl.segments():
        a, b = seg["start_frame"] * scale, seg["end_frame"] * scale
        ax_seg.axvspan(a, b, color=cmap(seg["class_id"] % 20), alpha=0.85)
        ax_seg.text((a + b) / 2, 0.5, plain(seg["label"]), ha="center", va="center", fontsize=8, clip_on=True)
    ax_seg.set_yticks([])
    ax_seg.set_ylabel("segments", rotation=0, ha="right", va="center", fontsize=8)
    ax_seg.set_title(
        f"{plain(Path(tl.path).name)}: window {tl.window} frames, stride {tl.stride} frames, "
        f"threshold {tl.threshold:g}",
        fontsize=9,
        loc="left",
    )
    ax.set_xlim(x_edges[0], x_edges[-1])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
    plt.close(fig)

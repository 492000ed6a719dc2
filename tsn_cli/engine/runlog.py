"""What a training run logs after each finished epoch (rank 0): a metrics.jsonl line, the curves PNG redrawn,
and the epoch's scalars in VisualDL when that optional package is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from tsn_cli.errors import TsnError

SCALARS = ("loss", "top1", "top5", "lr", "clips_per_s", "data_wait", "val_top1", "val_top5")


class EpochLog:
    """The per-epoch logs in `output`; `on_message` gets a line when a plot cannot be drawn (training goes on)."""

    def __init__(self, output: str | Path, on_message: Callable[[str], None] = lambda msg: None):
        self.output = Path(output)
        self.on_message = on_message
        self._vdl = None  # None: not opened yet; False: VisualDL is not installed
        self._unreadable_seen: set[str] = set()  # validation videos already reported unreadable

    def report_unreadable_val(self, paths: list[str]) -> None:
        """Say on screen (once per file, not only in metrics.jsonl) which validation videos were not scored."""
        new = sorted(set(paths) - self._unreadable_seen)
        if new:
            self._unreadable_seen.update(new)
            shown = ", ".join(new[:3]) + (f", +{len(new) - 3} more" if len(new) > 3 else "")
            self.on_message(
                f"warning: {len(new)} validation video(s) unreadable, not scored: {shown} "
                "(`tsn prepare check` on the val list gives the reasons)"
            )

    def write(self, row: dict) -> None:
        """Log one finished epoch's row."""
        from tsn_cli.engine.curves import read_metrics, write_curves
        from tsn_cli.fsutil import append_line

        append_line(self.output / "metrics.jsonl", json.dumps(row))
        try:
            write_curves(read_metrics(self.output / "metrics.jsonl"), self.output / "curves.png")
        except TsnError as exc:  # a plot must never stop training
            self.on_message(f"curves not drawn: {exc}")
        if self._vdl is None:
            try:
                from visualdl import LogWriter  # optional dependency
            except ImportError:
                self._vdl = False
            else:
                self._vdl = LogWriter(logdir=str(self.output / "vdl"))
        if self._vdl:
            for key in SCALARS:
                if isinstance(row.get(key), (int, float)):
                    tag = f"{'val' if key.startswith('val') else 'train'}/{key}"
                    self._vdl.add_scalar(tag=tag, step=row["epoch"], value=float(row[key]))
            if hasattr(self._vdl, "flush"):
                self._vdl.flush()

    def close(self) -> None:
        """Close the VisualDL writer, if one was opened."""
        if self._vdl:
            self._vdl.close()

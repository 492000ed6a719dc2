"""`tsn predict 0 | rtsp://... | http(s)://...`: a rich Live panel (or JSON Lines) of rolling predictions, then a
summary. The work is in tsn_cli.deploy.live."""

from __future__ import annotations

import json
import sys

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tsn_cli import ui


def _panel(spec: str, doc: dict | None, stats) -> Group:
    """Top-k with bars, and the stream's fps and latency."""
    t = Table(title=None, header_style="bold", show_edge=True)
    for name, just in (("label", "left"), ("score", "right"), ("", "left")):
        t.add_column(name, justify=just)
    for item in (doc or {}).get("top_k", []):
        bar = "\u2588" * int(round(item["score"] * 30))
        t.add_row(ui.safe(item["label"]), f"{item['score']:.4f}", f"[green]{bar}[/]")
    head = Text(f"{spec}  frames {stats.frames}  predictions {stats.predictions}  dropped {stats.dropped}")
    if doc:
        head.append(f"  t={doc['time']:.2f}s  fps {doc['fps'] or 0:.1f}  latency {doc['latency_ms']:.1f} ms")
    return Group(head, t, Text("Ctrl-C to stop", style="dim"))


def run_live_cli(
    predictor, spec: str, *, window: str, stride: str, average: str, reconnect: int, json_out: bool
) -> None:
    """Open `spec`, predict until it ends or Ctrl-C, print the summary (a table, or a final JSON line)."""
    from tsn_cli.deploy.live import LiveReader, LiveStats, run_live
    from tsn_cli.deploy.timeline import parse_span

    win, step = parse_span(window, "--window"), parse_span(stride, "--stride")
    src = LiveReader(spec, reconnect=reconnect, on_message=lambda m: ui.warn(ui.safe(m)))
    if not src.fps_known and "s" in (win.unit, step.unit):
        ui.info(f"{ui.safe(spec)}: the stream gives no frame rate; seconds are taken at {src.fps:g} frames/s")
    stats = LiveStats(spec)
    if json_out:

        def emit(doc: dict) -> None:
            sys.stdout.write(json.dumps(doc) + "\n")  # one JSON line per prediction, flushed at once
            sys.stdout.flush()

        run_live(predictor, src, window=win, stride=step, average=average, on_prediction=emit, stats=stats)
        sys.stdout.write(json.dumps({"summary": stats.to_json()}) + "\n")
        sys.stdout.flush()
        return
    with Live(_panel(spec, None, stats), console=ui.console, refresh_per_second=8, transient=False) as live:
        run_live(
            predictor,
            src,
            window=win,
            stride=step,
            average=average,
            stats=stats,
            on_prediction=lambda doc: live.update(_panel(spec, doc, stats)),
        )
    ui.console.line()  # the panel's last line stays; the summary starts below it
    s = stats.to_json()
    rows = [
        ("source", s["source"]),
        ("frames", s["frames"]),
        ("predictions", s["predictions"]),
        ("dropped frames (model busy)", s["dropped_frames"]),
        ("skipped windows", s["skipped_windows"]),
        ("reconnects", s["reconnects"]),
        ("seconds", s["seconds"]),
        ("frames/s", s["fps"]),
        ("mean latency (ms)", s["latency_ms_mean"]),
        ("max latency (ms)", s["latency_ms_max"]),
        ("ended", s["ended"]),
    ]
    ui.console.print(ui.table("Live summary", ["", "value"], rows))

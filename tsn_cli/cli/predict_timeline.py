"""`tsn predict --timeline`: print (and write) the timeline of each input; the work is in tsn_cli.deploy.timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from tsn_cli import ui
from tsn_cli.errors import raise_if_interrupted


def _clock(sec: Optional[float], frame: int) -> str:
    """12.5 -> '0:12.50'; frame count when there is no frame rate."""
    if sec is None:
        return f"frame {frame}"
    m, s = divmod(sec, 60.0)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:05.2f}" if h else f"{m}:{s:05.2f}"


def run_timelines(
    predictor,
    files: list[str],
    *,
    window: str,
    stride: str,
    threshold: float,
    average: str,
    top_k: int,
    output: Optional[Path],
    json_out: bool,
    save_video: Optional[Path] = None,
) -> list:
    """Timeline of every file (a bad one is reported and the others go on); returns the failures
    [(path, error)]."""
    from tsn_cli.deploy.timeline import parse_span, run_timeline
    from tsn_cli.deploy.timeline_files import write_timeline_files
    from tsn_cli.errors import DecodeError, first_line

    win, step = parse_span(window, "--window"), parse_span(stride, "--stride")
    docs, failed = [], []
    for path in files:
        progress = ui.make_progress(transient=True, disable=json_out)
        try:
            with progress:
                task = progress.add_task(f"timeline {ui.safe(Path(path).name)}", total=None)
                tl = run_timeline(
                    predictor,
                    path,
                    window=win,
                    stride=step,
                    threshold=threshold,
                    average=average,
                    on_progress=lambda d, t, p=progress, k=task: p.update(k, completed=d, total=t),
                )
        except DecodeError as exc:
            raise_if_interrupted(exc)
            failed.append((path, exc.reason))
            continue
        except Exception as exc:  # noqa: BLE001 - one bad input never stops the others
            from tsn_cli.errors import TsnError

            raise_if_interrupted(exc)
            if isinstance(exc, TsnError) and len(files) == 1:
                raise
            failed.append(
                (path, f"{type(exc).__name__}: {first_line(exc)}" if not isinstance(exc, TsnError) else str(exc))
            )
            continue
        if save_video is not None:
            from tsn_cli.deploy.annotate import save_video as write_annotated
            from tsn_cli.deploy.annotate import timeline_labeler

            n = write_annotated(path, save_video, timeline_labeler(tl))
            ui.info(f"wrote {ui.safe(str(save_video))} ({n} frames, each with its window's label)")
        if output is not None:
            out = Path(output) if len(files) == 1 else Path(output) / Path(path).stem
            written = write_timeline_files(tl, out, top_k)
            ui.info(f"wrote {', '.join(ui.safe(str(p)) for p in written)}")
        if json_out:
            docs.append(tl.to_json(top_k))
            continue
        segs = tl.segments()
        rows = [
            (
                _clock(s["start"], s["start_frame"]),
                _clock(s["end"], s["end_frame"]),
                s["label"],
                f"{s['score']:.4f}",
                s["windows"],
            )
            for s in segs
        ]
        title = (
            f"{path}: {len(tl.starts)} windows of {tl.window} frames every {tl.stride} frames, "
            f"{tl.distinct_frames} distinct frames"
        )
        cols = ["start", "end", "label", "mean score", "windows"]
        ui.console.print(ui.table(title, cols, rows, numeric=(0, 1, 3, 4)))
        if not segs:
            ui.console.print(f"[yellow]no window reaches --threshold {threshold:g}[/]")
        for w in tl.warnings:
            ui.console.print(f"[yellow](warning)[/] {ui.safe(w)}")
    if json_out:
        ui.print_json(docs + [{"path": p, "error": e} for p, e in failed])
    elif failed:
        ui.console.print(ui.table("Failed inputs", ["path", "error"], failed, paths=(0,)))
    return failed

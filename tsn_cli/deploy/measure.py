"""Speed of an export folder's models on every installed backend, recorded in `tsn.yaml` for `--backend auto`.

`tsn export --onnx` (and `--int8`) runs each usable (backend, precision) on one input of `views` frames -- the
chunk predict and eval run (`DEFAULT_BATCH_VIEWS`) -- and stores frames/s with the CPU's model name. `--backend
auto` trusts the numbers only on a CPU of the same name (`engines.choose_backend`). Timings are taken in one
process, one backend after another: on a shared machine they are noisy, but what counts is their order.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from tsn_cli.deploy.engines import BACKENDS, cpu_name, installed_backends, make_engine


def frames_per_s(engine, x: np.ndarray, reps: int = 3, min_s: float = 0.0) -> float:
    """Frames/s of `engine.run(x)` (one warm-up run first: kernels are chosen on the first run of a shape)."""
    engine.run(x)
    n, t0 = 0, time.perf_counter()
    while n < reps or time.perf_counter() - t0 < min_s:
        engine.run(x)
        n += 1
    return n * x.shape[0] * x.shape[1] / (time.perf_counter() - t0)


def measure_backends(
    model_dir: Path | str,
    target_size: int,
    *,
    views: int = 10,
    precisions=("fp32",),
    threads: Optional[int] = None,
    reps: int = 3,
) -> dict:
    """`{"cpu", "views", "frames_per_s": {precision: {backend: fps}}}` over the installed backends that can run
    each precision (paddle: fp32 only; onnxruntime/openvino: the ONNX files present)."""
    x = np.random.RandomState(0).standard_normal((1, views, 3, target_size, target_size)).astype(np.float32)
    out: dict = {}
    installed = installed_backends()
    for precision in precisions:
        fps = {}
        for backend in BACKENDS:
            if backend not in installed or (backend == "paddle" and precision != "fp32"):
                continue
            engine = make_engine(model_dir, backend, precision=precision, threads=threads, max_views=views)
            fps[backend] = round(frames_per_s(engine, x, reps), 2)
            del engine
        out[precision] = fps
    return {"cpu": cpu_name(), "views": views, "frames_per_s": out}

"""Post-training static int8 quantisation of an export folder's ONNX model (`tsn export --int8`).

Toolchain: ONNX Runtime's `quantize_static` on the exported ONNX graph (BatchNorm folded first) -- QDQ format,
per-channel int8 weights, uint8 activations (U8S8), every op ORT quantises, MinMax calibration -- chosen by
measurement (benchmarks/bench_int8.py; README "Deployment"): the one QDQ file runs int8 kernels on both ONNX
Runtime (S8S8 activations gave ORT no speed-up at 10 views; U8S8 2.9x) and OpenVINO (2-4x, within noise of its
best variant), and needs no package beyond the `onnx` extra. OpenVINO's NNCF was not tried (its dependencies).
Calibration clips are the list's videos through exactly the test preprocessing (`Predictor.preprocess`: the
export's seg_num x crops views), taken evenly over the list (lists are usually sorted by class).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tsn_cli.deploy.artifact import INT8_ONNX_NAME, ONNX_NAME
from tsn_cli.errors import TsnError


def spread(n: int, k: int) -> list[int]:
    """`k` indices spread evenly over range(n) (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return sorted({int(i * n / k) for i in range(k)})


def calibration_clips(predictor, records, size: int, say: Callable[[str], None]) -> list[np.ndarray]:
    """Up to `size` [1, V, 3, H, W] inputs from `records` (evenly spread); unreadable videos are skipped and said."""
    picked = [records[i] for i in spread(len(records), size)]
    clips = []
    items = predictor.prepared(picked)
    try:
        for rec, x, _t, _w, error in items:
            if error is not None:
                say(f"calibration: skipped {rec.path} ({error})")
            else:
                clips.append(x)
    finally:
        items.close()
    if not clips:
        raise TsnError("--calib-list: no calibration video could be read; nothing was written")
    return clips


# A restricted op set, for benchmarks/bench_int8.py's comparison (the default quantises every op ORT can).
OP_TYPES = ("Conv", "MatMul")
TOOLCHAIN = (
    "onnxruntime.quantization.quantize_static: QDQ, per-channel int8 weights, uint8 activations, all ops, "
    "MinMax calibration"
)


def quantize(
    model_dir: Path | str, clips: list[np.ndarray], *, activation: str = "uint8", op_types: Optional[tuple] = None
) -> Path:
    """Write `TSN.int8.onnx` beside `TSN.onnx`: static QDQ int8 (per-channel weights) calibrated on `clips`.

    `activation`: "int8" (ONNX Runtime's default S8S8) or "uint8" (U8S8); `op_types`: None quantises every op
    ONNX Runtime can."""
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise TsnError(f"--int8 needs onnxruntime's quantisation tools ({exc}): pip install 'tsn-cli[onnx]'") from None
    model_dir = Path(model_dir)
    src, dst = model_dir / ONNX_NAME, model_dir / INT8_ONNX_NAME
    name = onnx.load(str(src), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        """Feeds the calibration clips one by one."""

        def __init__(self):
            self.it = iter(clips)

        def get_next(self) -> Optional[dict]:
            x = next(self.it, None)
            return None if x is None else {name: np.ascontiguousarray(x, dtype=np.float32)}

    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # calibration warns about paddle2onnx's unused initialisers
    act = QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice (pre-process: done) and a line per unusual bias
    try:
        with tempfile.TemporaryDirectory(prefix="tsn-int8-") as tmp:
            # paddle2onnx leaves BatchNormalization after each Conv and weights as Constant nodes: fold BN into the
            # convs and make weights initialisers first, or the convs' weights and biases are not quantised.
            pre = Path(tmp) / "pre.onnx"
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=act,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                calibration_providers=["CPUExecutionProvider"],
                op_types_to_quantize=list(op_types) if op_types else None,
            )
    finally:
        root.setLevel(level)
    return dst


def calibrate(cfg, model_dir: Path, calib_list: Path, calib_size: int, say: Callable[[str], None]) -> dict:
    """Quantise the export folder's ONNX model on `calib_size` clips of `calib_list` (the export's test views);
    returns the calibration record {"list", "size", "clips"}."""
    import os

    from tsn_cli.deploy.artifact import read_meta
    from tsn_cli.deploy.predict import Predictor
    from tsn_cli.engine import build

    meta = read_meta(model_dir)
    view = {k: meta[k] for k in ("seg_num", "crops", "short_side", "target_size", "mean", "std")}
    pre = Predictor(None, label_names=[], fmt=cfg.data.format, frame_template=cfg.data.frame_template, **view)
    records = build.read_records(cfg, calib_list, "--calib-list").records
    if not records:
        raise TsnError(f"--calib-list {calib_list}: no usable line; nothing was written")
    clips = calibration_clips(pre, records, calib_size, say)
    say(f"calibrating int8 on {len(clips)} clips of {calib_list} ({view['seg_num']} seg x {view['crops']} crops)")
    quantize(model_dir, clips)
    return {"list": os.path.abspath(calib_list), "size": calib_size, "clips": len(clips)}


def score_int8(
    cfg, model_dir: Path, calibration: dict, eval_list: Optional[Path], benchmark: dict, say: Callable[[str], None]
) -> dict:
    """Score fp32 and int8 on `eval_list` (default: the calibration list) on one backend and record it all in
    tsn.yaml `precisions.int8`; returns that record.

    The backend is the fastest for int8 in `benchmark` (the export's measurement) when there is one, else
    OpenVINO when installed, else ONNX Runtime. When this CPU lacks the instructions that make int8 pay
    (VNNI/AMX) or int8 is no faster than fp32 there, the record's `note` says so ("deploy fp32").
    """
    import os

    from tsn_cli.deploy.artifact import INT8_ONNX_NAME, read_meta, write_meta
    from tsn_cli.deploy.engines import cpu_int8_support, installed_backends
    from tsn_cli.deploy.evaluate import evaluate_export

    measured = (benchmark.get("frames_per_s") or {}).get("int8") or {}
    if measured:
        backend = max(measured, key=measured.get)
    else:
        backend = "openvino" if "openvino" in installed_backends() else "onnxruntime"
    eval_list = eval_list or calibration["list"]
    scored = {}
    for precision in ("fp32", "int8"):
        res = evaluate_export(cfg, model_dir, eval_list, backend=backend, precision=precision, on_message=say)
        s = res.summary()
        scored[precision] = {
            "top1": s["top1"],
            "num_videos": s["num_videos"],
            "frames_per_s": res.speed.get("inference_frames_per_s"),
        }
    support = cpu_int8_support()
    fps = benchmark.get("frames_per_s") or {}
    f32 = (fps.get("fp32") or {}).get(backend) or scored["fp32"]["frames_per_s"]
    i8 = measured.get(backend) or scored["int8"]["frames_per_s"]
    note = None
    if support is None:
        note = "this CPU has no VNNI/AMX int8 instructions: int8 does not pay here; deploy fp32"
    elif f32 and i8 and i8 <= f32:
        note = f"int8 measured no faster than fp32 on {backend} here ({i8:.1f} vs {f32:.1f} frames/s); deploy fp32"
    record = {
        "file": INT8_ONNX_NAME,
        "toolchain": TOOLCHAIN,
        "calibration": calibration,
        "eval": {"list": os.path.abspath(eval_list), "backend": backend, **scored},
        "size_mb": {
            p: round((Path(model_dir) / f).stat().st_size / 2**20, 2)
            for p, f in (("fp32", "TSN.onnx"), ("int8", INT8_ONNX_NAME))
        },
        "cpu_int8": support,
        "note": note,
    }
    meta = read_meta(model_dir)
    meta["precisions"] = {"fp32": {"file": "TSN.onnx"}, "int8": record}
    write_meta(model_dir, meta)
    return record

"""Export a trained TSN to a static Paddle inference model (+ optional ONNX), with a `tsn.yaml` for predict.

The exported graph takes [N, V, 3, H, W] with N and V dynamic (V = seg_num x crops frames, crop-major) and
returns logits [N, num_classes], the mean over views exactly as the dygraph model computes it. Export checks
itself: the dygraph model must hold every tensor of the checkpoint exactly, and the exported model must reproduce
its logits on a real input, or export fails. With ONNX, every installed backend's speed is measured into tsn.yaml
(`benchmark`, for `--backend auto`); `int8` adds a calibrated int8 ONNX model scored against fp32 (`deploy.int8`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tsn_cli.deploy.artifact import INPUT_NAME, MODEL_STEM, ONNX_NAME, PARAMS_NAME, make_meta, model_files, write_meta
from tsn_cli.deploy.engines import PaddleEngine
from tsn_cli.errors import TsnError, first_line
from tsn_cli.fsutil import current_umask, exclusive_lock
from tsn_cli.runtime import import_paddle


@dataclass
class ExportResult:
    """Files written and the self-check."""

    output: Path
    files: list[Path] = field(default_factory=list)
    max_abs_diff: float = float("nan")
    onnx_max_abs_diff: Optional[float] = None
    size: dict = field(default_factory=dict)
    benchmark: dict = field(default_factory=dict)  # tsn.yaml `benchmark` (with --onnx)
    int8: Optional[dict] = None  # tsn.yaml `precisions.int8` (with --int8)


def export_model(
    cfg,
    weights: Path | str,
    output: Path | str,
    *,
    seg_num: Optional[int] = None,
    crops: Optional[int] = None,
    onnx: bool = False,
    int8: bool = False,
    calib_list: Optional[Path] = None,
    calib_size: int = 64,
    eval_list: Optional[Path] = None,
    measure: bool = True,
    sample: Optional[np.ndarray] = None,
    tolerance: float = 1e-4,  # relative to the largest |logit| (absolute below 1); see _limit
    wait: bool = False,
    on_message: Optional[Callable[[str], None]] = None,
) -> ExportResult:
    """Export `weights` (with `cfg`'s model settings) to `output`; returns the files and the parity check.

    `onnx` adds TSN.onnx (and, with `measure`, frames/s per installed backend in tsn.yaml); `int8` (implies
    `onnx`) adds TSN.int8.onnx calibrated on `calib_size` clips of `calib_list`, then scores fp32 and int8 on
    `eval_list` (default: the calibration list) -- see `deploy.int8`. Another export writing `output` stops this
    one ("is in use by pid N", TsnError), or with `wait` it is waited for (said through `on_message`)."""
    from tsn_cli.engine import build
    from tsn_cli.model.checkpoint import differing_tensors, load_weights

    say = on_message or (lambda m: None)
    onnx = onnx or int8
    if int8 and calib_list is None:
        raise TsnError("--int8 needs --calib-list LIST (videos whose test views calibrate the int8 ranges)")
    if int8 and calib_size < 1:
        raise TsnError(f"--calib-size: must be >= 1, got {calib_size}")
    paddle = import_paddle(cfg.runtime.threads)
    paddle.set_device("cpu")
    seg_num = seg_num or cfg.test_seg_num
    crops = crops or cfg.eval.crops
    model = build.build_model(cfg)
    rep = load_weights(model, weights, part="full", strict=True)
    say(f"weights {weights}: {rep.summary()}")
    model.eval()
    # The parity check below compares the export with this model: first make sure the model IS the checkpoint
    # (every tensor bit-exact), so a model with a random head can never "pass".
    bad = differing_tensors(model, weights)
    if bad:
        more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
        raise TsnError(f"export check failed: the model does not hold {weights}'s {bad[0]}{more}; nothing was written")

    output = Path(output)
    # a second export into the same folder stops (or waits) instead of mixing two models
    with exclusive_lock(output, what="tsn export", wait=wait, on_wait=say):
        job = _ExportJob(
            seg_num=seg_num,
            crops=crops,
            onnx=onnx,
            int8=int8,
            calib_list=calib_list,
            calib_size=calib_size,
            eval_list=eval_list,
            measure=measure,
            sample=sample,
            tolerance=tolerance,
        )
        return _write_export(paddle, model, cfg, output, job, say)


@dataclass(frozen=True)
class _ExportJob:
    """What to export, as `export_model` resolved it (seg_num and crops filled in from the config)."""

    seg_num: int
    crops: int
    onnx: bool
    int8: bool
    calib_list: Optional[Path]
    calib_size: int
    eval_list: Optional[Path]
    measure: bool
    sample: Optional[np.ndarray]
    tolerance: float


def _write_export(paddle, model, cfg, output: Path, job: _ExportJob, say) -> ExportResult:
    """Write and check the export in a unique staging folder, then put it in place of `output` as a whole."""
    import tempfile

    from tsn_cli.config import CONFIG_NAME, save_config
    from tsn_cli.engine import build
    from tsn_cli.model.flops import model_size

    t = cfg.augment.target_size
    for stale in output.parent.glob(f".{output.name}.*.partial"):  # left by killed runs (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    os.chmod(stage, 0o777 & ~current_umask())  # mkdtemp makes 0700; the folder keeps its mode when renamed
    try:
        spec = [paddle.static.InputSpec([None, None, 3, t, t], "float32", name=INPUT_NAME)]
        static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
        paddle.jit.save(static, str(stage / MODEL_STEM))
        write_meta(stage, make_meta(cfg, seg_num=job.seg_num, crops=job.crops, label_names=build.label_names(cfg)))
        save_config(cfg, stage / CONFIG_NAME)

        x = (
            job.sample
            if job.sample is not None
            else np.random.RandomState(0).standard_normal((1, job.seg_num * job.crops, 3, t, t)).astype("float32")
        )
        with paddle.no_grad():
            ref = model(paddle.to_tensor(x)).numpy()
        engine = PaddleEngine(stage, threads=cfg.runtime.threads)
        got = engine.run(x)
        diff = float(np.abs(got - ref).max())
        limit = _limit(job.tolerance, ref)
        say(f"exported vs dygraph: max |diff| {diff:.2e} (logits up to {np.abs(ref).max():.3g})")
        if not diff <= limit:
            raise TsnError(
                f"export check failed: the exported model differs from the dygraph model by {diff:.3g} (> "
                f"{limit:.3g}); nothing was written to {output}"
            )
        # The graph must not have the check's batch or view count baked in: run another N and V as well.
        x2 = _other_shape(x)
        with paddle.no_grad():
            ref2 = model(paddle.to_tensor(x2)).numpy()
        try:
            got2 = engine.run(x2)
        except Exception as exc:  # noqa: BLE001 - any failure here means the export is unusable
            raise TsnError(
                f"export check failed: the exported model rejects input shape {list(x2.shape)} ({first_line(exc, 200)})"
            ) from None
        diff2 = float(np.abs(got2 - ref2).max()) if got2.shape == ref2.shape else float("inf")
        if not diff2 <= _limit(job.tolerance, ref2):
            raise TsnError(
                f"export check failed: for input shape {list(x2.shape)} the exported model differs from dygraph by "
                f"{diff2:.3g}"
            )
        diff = max(diff, diff2)
        result = ExportResult(output=output, max_abs_diff=diff)
        if job.onnx:
            result.onnx_max_abs_diff = _export_onnx(stage, [(x, ref), (x2, ref2)], job.tolerance, say)
        result.size = model_size(cfg.model.depth, cfg.model.num_classes, job.seg_num * job.crops, t)
        if job.int8:
            from tsn_cli.deploy.int8 import calibrate, score_int8

            calibration = calibrate(cfg, stage, job.calib_list, job.calib_size, say)
        if job.onnx and job.measure:
            precisions = ("fp32", "int8") if job.int8 else ("fp32",)
            result.benchmark = _measure(stage, t, precisions, cfg.runtime.threads, say)
        if job.int8:
            result.int8 = score_int8(cfg, stage, calibration, job.eval_list, result.benchmark, say)
        # Replace the old export only once the new one is complete and checked.
        if output.exists():
            old = output.with_name(f".{output.name}.old")
            if old.exists():
                shutil.rmtree(old)
            output.rename(old)
            stage.rename(output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            stage.rename(output)
        result.files = sorted(p for p in output.iterdir() if p.is_file())
        return result
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _measure(stage: Path, target: int, precisions, threads, say) -> dict:
    """Frames/s per installed backend and precision, recorded in tsn.yaml for `--backend auto`."""
    from tsn_cli.deploy.artifact import read_meta
    from tsn_cli.deploy.measure import measure_backends

    bench = measure_backends(stage, target, precisions=precisions, threads=threads)
    meta = read_meta(stage)
    meta["benchmark"] = bench
    write_meta(stage, meta)
    for p, fps in bench["frames_per_s"].items():
        say(f"{p} frames/s ({bench['views']} views per run): " + ", ".join(f"{b} {v:.1f}" for b, v in fps.items()))
    return bench


def _limit(tolerance: float, ref: np.ndarray) -> float:
    """Allowed max |diff|: `tolerance` relative to the logit scale (absolute for logits below 1).

    Random-init or large-logit models (ResNet-50 logits reach ~1e3) differ by ~1e-3 absolute between the
    dygraph kernels and oneDNN's (different summation order), which is still a relative 1e-6.
    """
    return float(tolerance) * max(1.0, float(np.abs(ref).max()))


def _other_shape(x: np.ndarray) -> np.ndarray:
    """A cheap input with a different batch size and view count than `x` (re-using its first views)."""
    v = 1 if x.shape[1] > 1 else 2
    views = x[:1, :v] if x.shape[1] >= v else np.concatenate([x[:1]] * v, axis=1)
    return np.ascontiguousarray(np.concatenate([views, views[:, ::-1] * 0.5], axis=0))


def _export_onnx(stage: Path, checks: list, tolerance: float, say) -> float:
    """Convert with paddle2onnx (never letting it pip-install anything) and check with ONNX Runtime."""
    try:
        import onnxruntime as ort
        import paddle2onnx  # noqa: F401
    except ImportError:
        raise TsnError("--onnx needs paddle2onnx and onnxruntime: pip install 'tsn-cli[onnx]'") from None
    import subprocess
    import sys

    prog, _ = model_files(stage)
    cmd = [
        sys.executable,
        "-m",
        "paddle2onnx.command",
        "--model_dir",
        str(stage),
        "--model_filename",
        prog.name,
        "--params_filename",
        PARAMS_NAME,
        "--save_file",
        str(stage / ONNX_NAME),
        "--opset_version",
        "13",
        "--optimize_tool",
        "None",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    onnx_file = stage / ONNX_NAME
    if proc.returncode != 0 or not onnx_file.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TsnError(f"paddle2onnx failed: {tail[0]}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # paddle2onnx leaves unused initialisers; ORT warns about each
    sess = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    for x, ref in checks:  # the check's shape and another N/V: the dynamic axes must really be dynamic
        try:
            got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        except Exception as exc:  # noqa: BLE001
            raise TsnError(
                f"ONNX check failed: input shape {list(x.shape)} rejected ({first_line(exc, 200)})"
            ) from None
        diff = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
        if not diff <= _limit(tolerance, ref):
            raise TsnError(
                f"ONNX check failed: for input shape {list(x.shape)} ONNX Runtime differs from dygraph by {diff:.3g}"
            )
        worst = max(worst, diff)
    say(f"ONNX vs dygraph: max |diff| {worst:.2e}")
    return worst

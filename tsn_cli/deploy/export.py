"""Export a trained TSN to a static Paddle inference model (+ optional ONNX), with a `tsn.yaml` for predict.

The exported graph takes [N, V, 3, H, W] with N and V dynamic (V = seg_num x crops frames, crop-major) and
returns logits [N, num_classes], the mean over views exactly as the dygraph model computes it. Export checks
itself: the exported model must reproduce the dygraph logits on a real input, or export fails.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import yaml

from tsn_cli.errors import TsnError, first_line

MODEL_STEM = "TSN"
META_NAME = "tsn.yaml"


@dataclass
class ExportResult:
    """Files written and the self-check."""

    output: Path
    files: list[Path] = field(default_factory=list)
    max_abs_diff: float = float("nan")
    onnx_max_abs_diff: Optional[float] = None
    size: dict = field(default_factory=dict)


def model_files(model_dir: Path) -> tuple[Path, Path]:
    """(program file, params file) of an exported model: Paddle 3 writes .json, Paddle 2 .pdmodel."""
    model_dir = Path(model_dir)
    params = model_dir / f"{MODEL_STEM}.pdiparams"
    for ext in (".json", ".pdmodel"):
        prog = model_dir / f"{MODEL_STEM}{ext}"
        if prog.is_file() and params.is_file():
            return prog, params
    raise TsnError(f"{model_dir}: no exported model ({MODEL_STEM}.json or .pdmodel + {MODEL_STEM}.pdiparams); run `tsn export` first")


def read_meta(model_dir: Path) -> dict:
    """The `tsn.yaml` written beside an exported model."""
    p = Path(model_dir) / META_NAME
    try:
        meta = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TsnError(f"{p}: not found; is {model_dir} a `tsn export` folder?") from None
    except yaml.YAMLError as exc:
        raise TsnError(f"{p}: invalid YAML ({exc})") from None
    if not isinstance(meta, dict) or "num_classes" not in meta:
        raise TsnError(f"{p}: not a tsn export description")
    return meta


def export_model(
    cfg,
    weights: Path | str,
    output: Path | str,
    *,
    seg_num: Optional[int] = None,
    crops: Optional[int] = None,
    onnx: bool = False,
    sample: Optional[np.ndarray] = None,
    tolerance: float = 1e-4,  # relative to the largest |logit| (absolute below 1); see _limit
    on_message: Optional[Callable[[str], None]] = None,
) -> ExportResult:
    """Export `weights` (with `cfg`'s model settings) to `output`; returns the files and the parity check."""
    from tsn_cli.config import CONFIG_NAME, save_config
    from tsn_cli.engine import build
    from tsn_cli.engine.device import import_paddle
    from tsn_cli.fsutil import atomic_write_text
    from tsn_cli.model.checkpoint import load_weights
    from tsn_cli.model.flops import model_size

    say = on_message or (lambda m: None)
    paddle = import_paddle(cfg.runtime.threads)
    paddle.set_device("cpu")
    seg_num = seg_num or cfg.eval.seg_num or cfg.model.seg_num
    crops = crops or cfg.eval.crops
    t = cfg.augment.target_size
    model = build.build_model(cfg)
    rep = load_weights(model, weights, part="full")
    say(f"weights {weights}: {rep.summary()}")
    model.eval()

    output = Path(output)
    stage = output.with_name(f".{output.name}.partial")
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        spec = [paddle.static.InputSpec([None, None, 3, t, t], "float32", name="x")]
        static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
        paddle.jit.save(static, str(stage / MODEL_STEM))
        names = build.label_names(cfg)
        meta = {
            "format": "tsn-export/1",
            "model": {"depth": cfg.model.depth, "num_classes": cfg.model.num_classes, "train_seg_num": cfg.model.seg_num},
            "num_classes": cfg.model.num_classes,
            "seg_num": seg_num,
            "crops": crops,
            "short_side": cfg.augment.short_side,
            "target_size": t,
            "mean": list(cfg.augment.mean),
            "std": list(cfg.augment.std),
            "input_name": "x",
            "input_shape": ["N", "seg_num*crops", 3, t, t],
            "output": "logits (mean over views)",
            "label_names": names,
        }
        atomic_write_text(stage / META_NAME, yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
        save_config(cfg, stage / CONFIG_NAME)

        x = sample if sample is not None else np.random.RandomState(0).standard_normal((1, seg_num * crops, 3, t, t)).astype("float32")
        with paddle.no_grad():
            ref = model(paddle.to_tensor(x)).numpy()
        from tsn_cli.deploy.predict import PaddleEngine

        engine = PaddleEngine(stage, threads=cfg.runtime.threads)
        got = engine.run(x)
        diff = float(np.abs(got - ref).max())
        limit = _limit(tolerance, ref)
        say(f"exported vs dygraph: max |diff| {diff:.2e} (logits up to {np.abs(ref).max():.3g})")
        if not diff <= limit:
            raise TsnError(f"export check failed: the exported model differs from the dygraph model by {diff:.3g} (> {limit:.3g}); nothing was written to {output}")
        # The graph must not have the check's batch or view count baked in: run another N and V as well.
        x2 = _other_shape(x)
        with paddle.no_grad():
            ref2 = model(paddle.to_tensor(x2)).numpy()
        try:
            got2 = engine.run(x2)
        except Exception as exc:  # noqa: BLE001 - any failure here means the export is unusable
            raise TsnError(f"export check failed: the exported model rejects input shape {list(x2.shape)} ({first_line(exc, 200)})") from None
        diff2 = float(np.abs(got2 - ref2).max()) if got2.shape == ref2.shape else float("inf")
        if not diff2 <= _limit(tolerance, ref2):
            raise TsnError(f"export check failed: for input shape {list(x2.shape)} the exported model differs from dygraph by {diff2:.3g}")
        diff = max(diff, diff2)
        result = ExportResult(output=output, max_abs_diff=diff)
        if onnx:
            result.onnx_max_abs_diff = _export_onnx(stage, [(x, ref), (x2, ref2)], tolerance, say)
        result.size = model_size(cfg.model.depth, cfg.model.num_classes, seg_num * crops, t)
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
        import paddle2onnx  # noqa: F401
        import onnxruntime as ort
    except ImportError:
        raise TsnError("--onnx needs paddle2onnx and onnxruntime: pip install 'tsn-cli[onnx]'") from None
    import subprocess
    import sys

    prog, _ = model_files(stage)
    cmd = [sys.executable, "-m", "paddle2onnx.command", "--model_dir", str(stage), "--model_filename", prog.name,
           "--params_filename", f"{MODEL_STEM}.pdiparams", "--save_file", str(stage / f"{MODEL_STEM}.onnx"),
           "--opset_version", "13", "--optimize_tool", "None"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    onnx_file = stage / f"{MODEL_STEM}.onnx"
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
            raise TsnError(f"ONNX check failed: input shape {list(x.shape)} rejected ({first_line(exc, 200)})") from None
        diff = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
        if not diff <= _limit(tolerance, ref):
            raise TsnError(f"ONNX check failed: for input shape {list(x.shape)} ONNX Runtime differs from dygraph by {diff:.3g}")
        worst = max(worst, diff)
    say(f"ONNX vs dygraph: max |diff| {worst:.2e}")
    return worst

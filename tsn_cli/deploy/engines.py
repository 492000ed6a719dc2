"""Inference engines: one object with `run(x) -> logits` for each way of running a TSN.

`PaddleEngine` runs a `tsn export` folder through paddle.inference (oneDNN + thread count on CPU, GPU with
optional TensorRT), `OrtEngine` runs its ONNX file with ONNX Runtime, `OvEngine` the same ONNX file with OpenVINO,
`DygraphEngine` a checkpoint's dygraph model (no export needed). Every engine takes [N, V, 3, H, W] float32 and
returns logits [N, num_classes]. `make_engine` builds one by backend name and precision (fp32, or the int8 ONNX
model `tsn export --int8` writes), `choose_backend` resolves `--backend auto`. Export uses `PaddleEngine` for its
self-check and predict/eval use all of them; this module imports neither.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from tsn_cli.deploy.artifact import INT8_ONNX_NAME, ONNX_NAME, model_files
from tsn_cli.errors import TsnError
from tsn_cli.runtime import cpu_threads, import_paddle, resolve_device


@contextlib.contextmanager
def quiet_stdout():
    """Send file descriptor 1 to /dev/null for the duration (C/C++ writes included).

    paddle.inference's oneDNN pass prints a stray "ReduceMeanCheckIfOneDNNSupport" line to the process's
    stdout (std::cout, no flag turns it off), which would corrupt `--json`. Python-level redirection cannot
    catch it, so the descriptor itself is swapped; buffered C stdio output is flushed before restoring.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # stdout replaced (e.g. pytest capture): nothing to guard
        fd = 1
    sys.stdout.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _flush_c_stdio() -> None:
    """fflush(NULL): push C stdio buffers (where std::cout ends up) to the current descriptors."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except Exception:  # pragma: no cover - non-glibc platforms
        pass


class PaddleEngine:
    """paddle.inference predictor of a `tsn export` folder (one predictor, reused for every input).

    CPU: oneDNN + `threads` math threads. GPU: `device="gpu[:N]"`, optionally TensorRT fp16 (`tensorrt`;
    the engine is built for up to `max_views` frames per run). Input [N, V, 3, H, W], output logits [N, C].
    """

    def __init__(
        self,
        model_dir: Path | str,
        *,
        device: str = "cpu",
        threads: Optional[int] = None,
        tensorrt: bool = False,
        mkldnn: bool = True,
        max_views: int = 64,
    ):
        import_paddle(threads)
        from paddle import inference

        prog, params = model_files(Path(model_dir))
        config = inference.Config(str(prog), str(params))
        # CPU cores the engine keeps busy (predict sizes its decode workers to the rest); on GPU the feeding thread.
        self.cpu_threads = 1 if device.startswith("gpu") else threads or cpu_threads()
        if device.startswith("gpu"):
            config.enable_use_gpu(1024, int(device.split(":")[1]) if ":" in device else 0)
            if tensorrt:
                # TensorRT sees the flattened frame batch (N*V); fp16 halves memory traffic on tensor cores.
                config.enable_tensorrt_engine(
                    workspace_size=1 << 30,
                    max_batch_size=max(1, int(max_views)),
                    min_subgraph_size=3,
                    precision_mode=inference.PrecisionType.Half,
                    use_static=False,
                    use_calib_mode=False,
                )
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads or cpu_threads())
            if mkldnn:
                config.enable_mkldnn()
                # oneDNN primitives are cached per input shape; predict uses a handful (chunk sizes).
                config.set_mkldnn_cache_capacity(16)
        config.disable_glog_info()
        config.switch_ir_optim(True)
        with quiet_stdout():
            self.predictor = inference.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])
        self._seen: set = set()
        # predictor.run() keeps the GIL for the whole forward pass: prefetch must use a process.
        self.holds_gil = True

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a [N, V, 3, H, W] float32 array."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.input.reshape(list(x.shape))
        self.input.copy_from_cpu(x)
        if x.shape in self._seen:
            self.predictor.run()
        else:
            # The stray oneDNN print happens while a new shape's kernels are chosen: guard those runs only.
            with quiet_stdout():
                self.predictor.run()
            self._seen.add(x.shape)
        return self.output.copy_to_cpu()


def onnx_file(model_dir: Path | str, precision: str = "fp32") -> Path:
    """The ONNX model of a `tsn export` folder for `precision` (fp32: TSN.onnx, int8: TSN.int8.onnx)."""
    path = Path(model_dir) / (INT8_ONNX_NAME if precision == "int8" else ONNX_NAME)
    if not path.is_file():
        fix = "tsn export --int8 --calib-list LIST" if precision == "int8" else "tsn export --onnx"
        raise TsnError(f"{path}: not found; export with `{fix}`")
    return path


class OrtEngine:
    """ONNX Runtime on `TSN.onnx` (or the int8 `TSN.int8.onnx`) of a `tsn export --onnx` folder."""

    def __init__(self, model_dir: Path | str, *, threads: Optional[int] = None, precision: str = "fp32"):
        try:
            import onnxruntime as ort
        except ImportError:
            raise TsnError("--backend onnxruntime needs onnxruntime: pip install 'tsn-cli[onnx]'") from None
        path = onnx_file(model_dir, precision)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.cpu_threads = threads or cpu_threads()
        opts.log_severity_level = 3  # unused-initialiser warnings from paddle2onnx graphs are noise
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.name = self.sess.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a [N, V, 3, H, W] float32 array (ORT releases the GIL while running)."""
        return self.sess.run(None, {self.name: np.ascontiguousarray(x, dtype=np.float32)})[0]


class OvEngine:
    """OpenVINO (CPU plugin) on the ONNX model of a `tsn export --onnx` folder, fp32 or the int8 QDQ model.

    OpenVINO cannot read Paddle 3's PIR program (TSN.json), hence the ONNX file. The model keeps its dynamic
    batch and view axes; the CPU plugin compiles kernels per new input shape (predict uses a few).
    """

    def __init__(self, model_dir: Path | str, *, threads: Optional[int] = None, precision: str = "fp32"):
        try:
            import openvino as ov
        except ImportError:
            raise TsnError("--backend openvino needs openvino: pip install 'tsn-cli[openvino]'") from None
        path = onnx_file(model_dir, precision)
        core = ov.Core()
        self.cpu_threads = int(threads or cpu_threads())
        # LATENCY: one stream using every thread -- predict and eval run one clip at a time. f32: on CPUs with
        # bf16 instructions the plugin would otherwise compute in bf16 (measured: logits off by 1e-3, not fp32).
        props = {
            "INFERENCE_NUM_THREADS": self.cpu_threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", props)
        self.request = self.compiled.create_infer_request()

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a [N, V, 3, H, W] float32 array (OpenVINO releases the GIL while running)."""
        out = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(out[self.compiled.output(0)])


BACKENDS = ("paddle", "onnxruntime", "openvino")
# `--backend auto` without a measurement for this CPU in tsn.yaml: the order measured on a 2-core AMD EPYC
# (Zen 4, AVX-512 VNNI), ResNet-50 224, batch 10 views -- see README "Deployment" and benchmarks/bench_int8.py.
STATIC_ORDER = ("openvino", "paddle", "onnxruntime")


def installed_backends() -> list[str]:
    """The backends whose Python package can be imported here (paddle always)."""
    import importlib.util

    mods = {"paddle": "paddle", "onnxruntime": "onnxruntime", "openvino": "openvino"}
    return [b for b in BACKENDS if importlib.util.find_spec(mods[b]) is not None]


def choose_backend(
    meta: dict,
    model_dir: Path | str,
    precision: str = "fp32",
    *,
    installed: Optional[list[str]] = None,
    cpu: Optional[str] = None,
) -> tuple[str, str]:
    """(backend, why) for `--backend auto`: the fastest usable backend.

    Usable: installed, its model file present (ONNX for onnxruntime/openvino), and able to run `precision`
    (int8 runs on onnxruntime and openvino only). Fastest: the highest frames/s that `tsn export` measured on
    this CPU model (`tsn.yaml` `benchmark`, recorded with the CPU's name), else `STATIC_ORDER`.
    """
    installed = installed_backends() if installed is None else installed
    has_onnx = (Path(model_dir) / (INT8_ONNX_NAME if precision == "int8" else ONNX_NAME)).is_file()
    usable = [b for b in BACKENDS if b in installed and (has_onnx if b != "paddle" else precision == "fp32")]
    if not usable:
        need = "onnxruntime or openvino and the int8 model (tsn export --int8)" if precision == "int8" else "paddle"
        raise TsnError(f"--backend auto: no backend can run the {precision} model of {model_dir} (needs {need})")
    bench = meta.get("benchmark") or {}
    fps = (bench.get("frames_per_s") or {}).get(precision) or {}
    cpu = cpu_name() if cpu is None else cpu
    measured = {b: float(fps[b]) for b in usable if isinstance(fps.get(b), (int, float))}
    if measured and bench.get("cpu") == cpu:
        best = max(measured, key=measured.get)
        return best, f"fastest measured on this CPU at export ({measured[best]:.1f} frames/s)"
    best = next(b for b in STATIC_ORDER if b in usable)
    why = "no measurement for this CPU in tsn.yaml" if measured else "no measurement in tsn.yaml"
    return best, f"{why}: static order {' > '.join(STATIC_ORDER)}"


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo; the platform's processor string elsewhere)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_int8_support() -> Optional[str]:
    """The instructions that make int8 faster than fp32 on this CPU ("AMX", "AVX512-VNNI", "AVX-VNNI"), or None."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return None
    for flag, name in (("amx_int8", "AMX"), ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI")):
        if flag in flags:
            return name
    return None


def make_engine(
    model_dir: Path | str,
    backend: str,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    threads: Optional[int] = None,
    tensorrt: bool = False,
    max_views: int = 64,
):
    """The engine for a `tsn export` folder by backend name ("paddle", "onnxruntime", "openvino") and precision."""
    if precision not in ("fp32", "int8"):
        raise TsnError(f"--precision: must be fp32 or int8, got {precision!r}")
    if backend == "onnxruntime":
        return OrtEngine(model_dir, threads=threads, precision=precision)
    if backend == "openvino":
        return OvEngine(model_dir, threads=threads, precision=precision)
    if backend == "paddle":
        if precision == "int8":
            raise TsnError("--precision int8 runs on --backend onnxruntime or openvino (the int8 model is ONNX)")
        return PaddleEngine(model_dir, device=device, threads=threads, tensorrt=tensorrt, max_views=max_views)
    raise TsnError(f"--backend: unknown backend {backend!r} (allowed: auto, {', '.join(BACKENDS)})")


class DygraphEngine:
    """The dygraph model from a checkpoint (no export needed; slower on CPU)."""

    def __init__(self, cfg, weights: Path | str, on_message=None):
        from tsn_cli.engine import build
        from tsn_cli.model.checkpoint import load_weights

        self.paddle = import_paddle(cfg.runtime.threads)
        device = resolve_device(cfg.runtime.device)
        self.cpu_threads = 1 if str(device).startswith("gpu") else cfg.runtime.threads or cpu_threads()
        self.model = build.build_model(cfg)
        rep = load_weights(self.model, weights, part="full", strict=True)
        if on_message:
            on_message(f"weights {weights}: {rep.summary()}")
        self.model.eval()

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a [N, V, 3, H, W] float32 array."""
        with self.paddle.no_grad():
            return self.model(self.paddle.to_tensor(x)).numpy()

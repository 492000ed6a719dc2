"""Prediction for video files: test-time views -> inference engine -> softmax top-k.

Engines: `PaddleEngine` (an exported model through paddle.inference: oneDNN + thread count on CPU, GPU with
optional TensorRT), `OrtEngine` (ONNX Runtime on the exported ONNX file) and `DygraphEngine` (a checkpoint,
no export needed). Decoding and preprocessing of the next video run in the background while the current one
is inferred -- a thread for engines that release the GIL, a spawned process for paddle.inference (whose
`run()` holds the GIL; library callers using it from a script need the usual `if __name__ == "__main__":`
guard of multiprocessing) -- and one engine is reused for every input. Views are run in equal chunks of at
most `DEFAULT_BATCH_VIEWS` (faster than one huge batch on CPU; the averaged logits are the same).
"""

from __future__ import annotations

import contextlib
import glob
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from tsn_cli.engine.metrics import softmax
from tsn_cli.errors import DecodeError, TsnError

VIDEO_EXTS = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".flv", ".mpg", ".mpeg", ".m4v", ".wmv", ".3gp"}


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

    def __init__(self, model_dir: Path | str, *, device: str = "cpu", threads: Optional[int] = None, tensorrt: bool = False, mkldnn: bool = True, max_views: int = 64):
        from tsn_cli.deploy.export import model_files
        from tsn_cli.engine.device import cpu_threads, import_paddle

        import_paddle(threads)
        from paddle import inference

        prog, params = model_files(Path(model_dir))
        config = inference.Config(str(prog), str(params))
        if device.startswith("gpu"):
            config.enable_use_gpu(1024, int(device.split(":")[1]) if ":" in device else 0)
            if tensorrt:
                # TensorRT sees the flattened frame batch (N*V); fp16 halves memory traffic on tensor cores.
                config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=max(1, int(max_views)), min_subgraph_size=3, precision_mode=inference.PrecisionType.Half, use_static=False, use_calib_mode=False)
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


class OrtEngine:
    """ONNX Runtime on `TSN.onnx` of a `tsn export --onnx` folder."""

    def __init__(self, model_dir: Path | str, *, threads: Optional[int] = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise TsnError("--backend onnxruntime needs onnxruntime: pip install 'tsn-cli[onnx]'") from None
        from tsn_cli.engine.device import cpu_threads

        path = Path(model_dir) / "TSN.onnx"
        if not path.is_file():
            raise TsnError(f"{path}: not found; export with `tsn export --onnx`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or cpu_threads()
        opts.log_severity_level = 3  # unused-initialiser warnings from paddle2onnx graphs are noise
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.name = self.sess.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a [N, V, 3, H, W] float32 array (ORT releases the GIL while running)."""
        return self.sess.run(None, {self.name: np.ascontiguousarray(x, dtype=np.float32)})[0]


class DygraphEngine:
    """The dygraph model from a checkpoint (no export needed; slower on CPU)."""

    def __init__(self, cfg, weights: Path | str, on_message=None):
        from tsn_cli.engine import build
        from tsn_cli.engine.device import import_paddle, resolve_device
        from tsn_cli.model.checkpoint import load_weights

        self.paddle = import_paddle(cfg.runtime.threads)
        resolve_device(cfg.runtime.device)
        self.model = build.build_model(cfg)
        rep = load_weights(self.model, weights, part="full")
        if on_message:
            on_message(f"weights {weights}: {rep.summary()}")
        self.model.eval()

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a [N, V, 3, H, W] float32 array."""
        with self.paddle.no_grad():
            return self.model(self.paddle.to_tensor(x)).numpy()


# Views per engine run for paddle.inference / ONNX Runtime on CPU. Measured here (ResNet-50, 224, 2 cores,
# paddle.inference + oneDNN, same process, interleaved): 8 views per run 8.6-9.2 frames/s, 10 views 8.3,
# 25 views 7.4 on a machine shared with other jobs; quiet: 25 views 21.6, 50 19.3, all 250 at once 13.6
# (activations fall out of cache). 10 is as fast as 8 and splits 25x10 = 250 views into 25 equal runs (one
# input shape, one set of oneDNN primitives). See benchmarks/bench_predict.py.
DEFAULT_BATCH_VIEWS = 10


def chunk_bounds(v: int, limit: int) -> list[tuple[int, int]]:
    """Split ``v`` views into the fewest runs of at most ``limit``, of near-equal size.

    Equal sizes keep the number of distinct input shapes (and so of oneDNN primitive builds) small:
    250 views with limit 10 -> 25 x 10; 30 views with limit 25 -> 2 x 15 rather than 25 + 5.
    """
    n = -(-v // max(1, limit))
    edges = [round(i * v / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n) if edges[i + 1] > edges[i]]


def expand_inputs(items: Iterable[str]) -> list[str]:
    """Files, folders (their videos, sorted) and globs -> paths. A name that matches nothing stays, to fail later."""
    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTS))
        elif any(c in item for c in "*?[") and not p.exists():
            out.extend(sorted(glob.glob(item, recursive=True)))
        else:
            out.append(item)
    return out


@dataclass
class Prediction:
    """One input's result: top-k or an error."""

    path: str
    top_k: list[dict] = field(default_factory=list)
    scores: Optional[np.ndarray] = None
    error: Optional[str] = None
    timings: dict = field(default_factory=dict)

    def to_json(self, all_scores: bool = False) -> dict:
        """`{"path", "top_k": [{"class_id", "label", "score"}]}` (+ `"scores"`), or `{"path", "error"}`."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        d = {"path": self.path, "top_k": self.top_k}
        if all_scores and self.scores is not None:
            d["scores"] = [float(s) for s in self.scores]
        return d


class Predictor:
    """Views + engine + top-k. `predict(paths)` yields one `Prediction` per path, in order."""

    def __init__(self, engine, *, seg_num: int, crops: int, short_side: int, target_size: int, mean, std, label_names: list[str], top_k: int = 5, batch_views: Optional[int] = None):
        self.engine = engine
        self.seg_num, self.crops = seg_num, crops
        self.short_side, self.target_size = short_side, target_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.names = label_names
        self.top_k = top_k
        self.batch_views = batch_views

    def preprocess(self, path: str) -> tuple[np.ndarray, dict]:
        """Decode the sampled frames and build the [1, V, 3, H, W] input."""
        from tsn_cli.data.video import open_source
        from tsn_cli.data.views import test_clip

        t0 = time.perf_counter()
        p = Path(path)
        if not p.exists():
            raise DecodeError(path, "file not found")
        if p.is_dir():
            raise DecodeError(path, "is a folder, not a video")
        src = open_source(str(p), "video")
        t1 = time.perf_counter()
        clip = test_clip(src, self.seg_num, self.crops, self.short_side, self.target_size, self.mean, self.std)
        t2 = time.perf_counter()
        return clip[None], {"decode": t1 - t0, "preprocess": t2 - t1}

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits [C] for one video; views are split into chunks when `batch_views` is set (same result)."""
        v = x.shape[1]
        if not self.batch_views or v <= self.batch_views:
            return self.engine.run(x)[0]
        # Mean of per-chunk logits weighted by chunk size equals the logits of all views together (the
        # consensus is a mean and the head is linear).
        total = None
        for s, e in chunk_bounds(v, self.batch_views):
            out = self.engine.run(x[:, s:e])[0].astype(np.float64) * (e - s)
            total = out if total is None else total + out
        return (total / v).astype(np.float32)

    def _result(self, path: str, logits: np.ndarray, timings: dict) -> Prediction:
        t0 = time.perf_counter()
        probs = softmax(logits)
        k = min(self.top_k, len(probs))
        top = np.argsort(-probs, kind="stable")[:k]
        items = [{"class_id": int(i), "label": self.names[int(i)] if int(i) < len(self.names) else str(int(i)), "score": float(probs[i])} for i in top]
        timings["postprocess"] = time.perf_counter() - t0
        return Prediction(path, items, probs, timings=timings)

    def _prepare(self, path: str) -> tuple:
        """(path, x, timings, error) for one input; a bad input is reported, never raised."""
        try:
            return (path, *self.preprocess(path), None)
        except DecodeError as exc:
            return (path, None, {}, exc.reason)
        except Exception as exc:  # noqa: BLE001 - a bad input is reported, never a crash
            return (path, None, {}, f"{type(exc).__name__}: {exc}")

    def _view_params(self) -> dict:
        """The view settings, to rebuild an engine-less Predictor in the prefetch process."""
        return {"seg_num": self.seg_num, "crops": self.crops, "short_side": self.short_side, "target_size": self.target_size, "mean": self.mean, "std": self.std}

    def predict(self, paths: list[str], prefetch: int = 2) -> Iterator[Prediction]:
        """Predict every path, in order, while the next inputs are decoded and preprocessed in the background.

        Engines that release the GIL while running (ONNX Runtime, test doubles) get a background thread.
        paddle.inference's `run()` holds the GIL for the whole forward pass (measured: a Python thread gets
        no time slice during it), so for it (`engine.holds_gil`) the background work runs in a separate
        process that hands over each clip through a file in shared memory (/dev/shm).
        """
        if getattr(self.engine, "holds_gil", False) and len(paths) > 1:
            items = _process_prefetch(paths, self._view_params(), prefetch, self._prepare)
        else:
            items = _thread_prefetch(paths, prefetch, self._prepare)
        try:
            for path, x, timings, error in items:
                if error is not None:
                    yield Prediction(path, error=error)
                    continue
                t0 = time.perf_counter()
                logits = self.infer(x)
                timings["inference"] = time.perf_counter() - t0
                yield self._result(path, logits, timings)
        finally:
            items.close()


def _thread_prefetch(paths: list[str], prefetch: int, prepare) -> Iterator[tuple]:
    """Yield `prepare(path)` for each path, computed up to `prefetch` ahead in a daemon thread."""
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def produce():
        for path in paths:
            if stop.is_set():
                return
            q.put(prepare(path))
        q.put(None)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(0.05)


def _shm_dir() -> str:
    """A private temp folder, in RAM (/dev/shm) when there is one."""
    import tempfile

    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="tsn-predict-", dir=base)


def _prefetch_worker(paths: list[str], params: dict, out_dir: str, q) -> None:
    """Child process: preprocess each path, save the clip as .npy in `out_dir`, queue (path, file, timings, error)."""
    try:
        import cv2

        cv2.setNumThreads(1)  # the parent's inference already uses every core
    except Exception:  # pragma: no cover
        pass
    pred = Predictor(None, label_names=[], **params)
    for i, path in enumerate(paths):
        path, x, timings, error = pred._prepare(path)
        file = None
        if error is None:
            file = os.path.join(out_dir, f"{i}.npy")
            np.save(file, x)
        q.put((path, file, timings, error))
    q.put(None)


def _process_prefetch(paths: list[str], params: dict, prefetch: int, prepare) -> Iterator[tuple]:
    """Yield prepared inputs computed by a spawned child process (no paddle in it, no GIL shared).

    If the child cannot start or dies, the remaining inputs are prepared in this process instead.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # never fork a process that holds paddle/oneDNN thread pools
    out_dir = _shm_dir()
    q = ctx.Queue(maxsize=max(1, prefetch))
    proc = ctx.Process(target=_prefetch_worker, args=(paths, params, out_dir, q), daemon=True)
    done = 0
    try:
        try:
            proc.start()
        except Exception:  # noqa: BLE001 - e.g. no /dev/shm semaphores: fall back to doing it inline
            proc = None
        while proc is not None and done < len(paths):
            try:
                item = q.get(timeout=1.0)
            except queue.Empty:
                if proc.is_alive():
                    continue
                break  # the worker died: finish inline below
            if item is None:
                break
            path, file, timings, error = item
            x = None
            if file is not None:
                t0 = time.perf_counter()
                x = np.load(file)
                os.unlink(file)
                timings["transfer"] = time.perf_counter() - t0
            done += 1
            yield path, x, timings, error
        for path in paths[done:]:
            yield prepare(path)
    finally:
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(5)
        q.close()
        q.cancel_join_thread()
        import shutil

        shutil.rmtree(out_dir, ignore_errors=True)


def predictor_from_export(model_dir: Path | str, *, backend: str = "paddle", device: str = "cpu", threads: Optional[int] = None, tensorrt: bool = False, seg_num=None, crops=None, top_k: int = 5, batch_views: Optional[int] = None) -> Predictor:
    """A Predictor for a `tsn export` folder (settings and class names from its tsn.yaml).

    `backend` is "paddle" (paddle.inference) or "onnxruntime"; `batch_views` is the most views per engine
    run (default `DEFAULT_BATCH_VIEWS`, the fastest on CPU; results do not depend on it).
    """
    from tsn_cli.deploy.export import read_meta

    meta = read_meta(model_dir)
    batch_views = batch_views or DEFAULT_BATCH_VIEWS
    if backend == "onnxruntime":
        engine = OrtEngine(model_dir, threads=threads)
    elif backend == "paddle":
        engine = PaddleEngine(model_dir, device=device, threads=threads, tensorrt=tensorrt, max_views=batch_views)
    else:
        raise TsnError(f"--backend: unknown backend {backend!r} (allowed: paddle, onnxruntime)")
    return Predictor(engine, seg_num=seg_num or meta["seg_num"], crops=crops or meta["crops"], short_side=meta["short_side"], target_size=meta["target_size"], mean=meta["mean"], std=meta["std"], label_names=list(meta.get("label_names") or []), top_k=top_k, batch_views=batch_views)


def predictor_from_weights(cfg, weights: Path | str, *, seg_num=None, crops=None, top_k: int = 5, on_message=None) -> Predictor:
    """A Predictor running the dygraph model of a checkpoint."""
    from tsn_cli.engine.build import label_names

    engine = DygraphEngine(cfg, weights, on_message)
    a = cfg.augment
    return Predictor(engine, seg_num=seg_num or cfg.eval.seg_num or cfg.model.seg_num, crops=crops or cfg.eval.crops, short_side=a.short_side, target_size=a.target_size, mean=a.mean, std=a.std, label_names=label_names(cfg), top_k=top_k, batch_views=cfg.eval.max_views_per_batch)

"""`tsn predict --timeline`: what happens when in a long video, from one pass over its frames.

TSN's consensus is a mean over frames and its classifier is linear after average pooling, so the logits of a
window (its `seg_num` frames x `crops` views) are exactly the mean of its frames' per-view logits. So: plan
all windows (`--window`, `--stride`; TSN test sampling -- segment centres -- inside each), take the set of
distinct frames, decode them in index order in small chunks (through the frame-access planner of
`tsn_cli.data.access` when the container has an index: a seek past groups of pictures nothing samples, and no
decoding of H.264 non-reference pictures nothing samples), run each through the engine once as a batch of
single-frame views ([n*crops, 1, 3, H, W]; the exported graph takes [N, V, 3, H, W] with both axes dynamic),
and close each window as soon as its last frame has logits. Only the logits of frames that a later window still
needs are kept (a few KB each), so memory does not grow with the video's length, and the cost grows with the
number of distinct frames, not windows x seg_num.

Window scores follow `eval.average`: "logits" averages logits over frames and crops, then softmax (what plain
`tsn predict` does); "scores" averages each crop's softmax over the crops (as `tsn eval`).
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tsn_cli.data.sampling import segment_indices
from tsn_cli.engine.metrics import softmax
from tsn_cli.errors import ConfigError, DecodeError, first_line

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(s|f)?\s*$", re.IGNORECASE)
# Frames decoded and preprocessed per step: small, so a step's views stay a few MB even with 10 crops.
DECODE_FRAMES = 32
# Decoding moves to a child process (paddle.inference) from this many chunks on; the parent decodes the first
# PROCESS_HEAD_CHUNKS itself while the child starts (~0.5-1 s: spawn, imports), so the engine is not idle then.
PROCESS_MIN_CHUNKS = 8
PROCESS_HEAD_CHUNKS = 2
# The decoding child runs at a lower priority: when it takes a core from one of the engine's OpenMP threads, the
# other waits for it at the next barrier, so the engine loses the whole time slice, not half of it. Measured on
# 2 cores (benchmarks/bench_timeline.py, ResNet-18 112 px): timeline/engine 0.53 at nice 0, 0.72 at 10, 0.69 at
# 19 (the engine then waits for frames a third of the time).
DECODE_NICE = 10


@dataclass(frozen=True)
class Span:
    """A duration from the command line: `value` seconds (unit "s") or frames (unit "f")."""

    value: float
    unit: str

    def frames(self, fps: Optional[float], flag: str) -> int:
        """The span in frames (at least 1); seconds need the video's frame rate."""
        if self.unit == "f":
            return max(1, int(self.value))
        if not fps or fps <= 0:
            raise ConfigError(
                f"{flag}: {self} is in seconds but the input has no frame rate (a frame folder?); "
                f"give it in frames, e.g. {flag} 64f"
            )
        return max(1, int(round(self.value * fps)))

    def __str__(self) -> str:
        v = int(self.value) if float(self.value).is_integer() else self.value
        return f"{v}{self.unit}"


def parse_span(text: str, flag: str) -> Span:
    """'2s', '0.5s', '2' (seconds) or '64f' (frames) -> Span; anything else is a ConfigError naming `flag`."""
    m = _SPAN.match(str(text))
    if not m or float(m.group(1)) <= 0 or (m.group(2) or "s").lower() == "f" and not float(m.group(1)).is_integer():
        raise ConfigError(f"{flag}: {text!r} is not a duration; use seconds (2s, 0.5s) or whole frames (64f)")
    return Span(float(m.group(1)), (m.group(2) or "s").lower())


@dataclass
class Window:
    """Frames [start, end) of the video and the `seg_num` frame indices sampled in it."""

    start: int
    end: int
    frames: np.ndarray


def plan_windows(num_frames: int, window: int, stride: int, seg_num: int) -> list[Window]:
    """Windows of `window` frames every `stride` frames, the last one ending at the video's end (so the tail is
    covered); one window over the whole video when it is shorter than `window`. Inside each: TSN test sampling
    (segment centres), exactly what `tsn predict` samples from a clip of that length."""
    n = int(num_frames)
    win = min(int(window), n)
    starts = list(range(0, n - win + 1, max(1, int(stride))))
    if starts[-1] + win < n:
        starts.append(n - win)
    return [Window(s, s + win, s + segment_indices(win, seg_num, train=False)) for s in starts]


def window_scores(frame_logits: np.ndarray, average: str) -> np.ndarray:
    """Class probabilities of a window from its frames' per-crop logits [T, crops, C]."""
    per_crop = frame_logits.astype(np.float64).mean(axis=0)  # [crops, C]: the crop's T-segment logits
    if average == "scores":
        return np.mean([softmax(c) for c in per_crop], axis=0)
    return softmax(per_crop.mean(axis=0))


@dataclass
class Timeline:
    """One video's timeline: per-window probabilities and the merged segments."""

    path: str
    fps: Optional[float]
    num_frames: int
    window: int
    stride: int
    seg_num: int
    crops: int
    average: str
    threshold: float
    names: list[str]
    starts: np.ndarray  # [W] first frame of each window
    ends: np.ndarray  # [W] one past the last frame
    probs: np.ndarray  # [W, C]
    distinct_frames: int = 0
    warnings: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def seconds(self, frame: float) -> Optional[float]:
        """A frame position in seconds (None without a frame rate)."""
        return None if not self.fps else round(float(frame) / self.fps, 3)

    def label(self, c: int) -> str:
        return self.names[c] if c < len(self.names) else str(c)

    def own_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Each window's own stretch of the video: from halfway between its centre and the previous window's to
        halfway to the next (the first from 0, the last to the end), so merged segments tile the video."""
        centres = (self.starts + self.ends) / 2.0
        mids = (centres[:-1] + centres[1:]) / 2.0
        return np.concatenate([[0.0], mids]), np.concatenate([mids, [float(self.num_frames)]])

    def segments(self) -> list[dict]:
        """Runs of windows with the same top class whose score is >= `threshold`, as
        {start, end (seconds), start_frame, end_frame, class_id, label, score (mean top score), windows}."""
        top = self.probs.argmax(axis=1)
        score = self.probs[np.arange(len(top)), top]
        lo, hi = self.own_bounds()
        out: list[dict] = []
        i = 0
        while i < len(top):
            if score[i] < self.threshold:
                i += 1
                continue
            j = i
            while j + 1 < len(top) and top[j + 1] == top[i] and score[j + 1] >= self.threshold:
                j += 1
            c = int(top[i])
            out.append(
                {
                    "start": self.seconds(lo[i]),
                    "end": self.seconds(hi[j]),
                    "start_frame": int(round(lo[i])),
                    "end_frame": int(round(hi[j])),
                    "class_id": c,
                    "label": self.label(c),
                    "score": float(score[i : j + 1].mean()),
                    "windows": j - i + 1,
                }
            )
            i = j + 1
        return out

    def window_rows(self, top_k: int) -> list[dict]:
        """Per window: start/end (seconds and frames) and its top-k classes."""
        rows = []
        k = min(top_k, self.probs.shape[1])
        for s, e, p in zip(self.starts, self.ends, self.probs, strict=True):
            order = np.argsort(-p, kind="stable")[:k]
            rows.append(
                {
                    "start": self.seconds(s),
                    "end": self.seconds(e),
                    "start_frame": int(s),
                    "end_frame": int(e),
                    "top_k": [{"class_id": int(c), "label": self.label(int(c)), "score": float(p[c])} for c in order],
                }
            )
        return rows

    def to_json(self, top_k: int = 5) -> dict:
        """The machine-readable timeline: settings, per-window top-k and the segments."""
        return {
            "path": self.path,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "duration": self.seconds(self.num_frames),
            "window_frames": self.window,
            "stride_frames": self.stride,
            "seg_num": self.seg_num,
            "crops": self.crops,
            "average": self.average,
            "threshold": self.threshold,
            "distinct_frames": self.distinct_frames,
            "naive_frames": self.seg_num * len(self.starts),
            "warnings": list(self.warnings),
            "segments": self.segments(),
            "windows": self.window_rows(top_k),
        }


class SequentialReader:
    """The wanted frames of a video, asked for in increasing order, from one sequential OpenCV pass: every frame is
    grabbed (decoded) and only the wanted ones converted. On a 10-minute H.264 video this is ~5x faster than
    decord's `get_batch`, which seeks for each request; the pixels are the same (FFmpeg decodes both; the
    equivalence test compares with `tsn predict`, which reads through decord). Any failure of OpenCV falls back
    to `source.get` for the rest."""

    def __init__(self, source):
        from tsn_cli.data.probe import cv2_quiet, open_capture

        self.src = source
        self.cv2 = cv2_quiet()
        self.cap = open_capture(source.path) if hasattr(source, "_reader") else None  # videos only, not frame folders
        self.pos = 0
        if self.cap is not None and not self.cap.isOpened():
            self.close()

    def get(self, idx: np.ndarray) -> np.ndarray:
        """uint8 RGB [n, H, W, 3] of the increasing frame indices `idx`."""
        out = []
        for k, f in enumerate(idx.tolist()):
            if self.cap is None or f < self.pos:
                return self._rest(out, idx[k:])
            while self.pos <= f:
                if not self.cap.grab():
                    self.close()
                    return self._rest(out, idx[k:])
                self.pos += 1
            ok, bgr = self.cap.retrieve()
            if not ok or bgr is None or (out and bgr.shape[:2] != out[0].shape[:2]):
                self.close()
                return self._rest(out, idx[k:])
            out.append(self.cv2.cvtColor(bgr, self.cv2.COLOR_BGR2RGB))
        return np.stack(out)

    def _rest(self, out: list, idx: np.ndarray) -> np.ndarray:
        rest = self.src.get(idx)
        return np.concatenate([np.stack(out), rest]) if out else rest

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class SourceReader:
    """Chunks of frames through the FrameSource itself. For a video with a container index that is the frame-access
    planner (`tsn_cli.data.access`) on the source's one open container: each chunk one seek to the key frame before
    it (or a decode through when that is cheaper), H.264 non-reference pictures nobody samples never decoded, the
    pixels decord's, a failed read falling back to decord."""

    def __init__(self, source):
        self.src = source

    def get(self, idx: np.ndarray) -> np.ndarray:
        """uint8 RGB [n, H, W, 3] of the frames at `idx`."""
        return self.src.get(idx)

    def close(self) -> None:
        pass


def open_reader(source):
    """A reader of `source`'s frames in increasing order: the planner's (`SourceReader`) when the video has a
    usable container index, else one sequential OpenCV pass (frame folders: the source itself)."""
    if getattr(source, "_index", None) is not None:
        return SourceReader(source)
    return SequentialReader(source)


class FrameLogits:
    """Per-frame, per-crop logits of chosen frames of one source, computed in index order in chunks.

    `chunks()` yields (frame indices [n], logits [n, crops, C]); decoding + preprocessing of the next chunk
    run in a background thread while the engine runs the current one (decord and OpenCV release the GIL).
    """

    def __init__(self, predictor, source, frames: np.ndarray, chunk: int = DECODE_FRAMES, reader=None):
        from tsn_cli.deploy.predict import view_transform

        self.p = predictor
        self.src = source
        self.frames = frames
        self.chunk = max(1, int(chunk) // max(1, predictor.crops))  # ~32 views per step whatever the crops
        self.transform = view_transform(predictor)
        # decode/preprocess: where they ran (a thread or the child); wait: the engine idle, waiting for views
        self.timings = {"decode": 0.0, "preprocess": 0.0, "inference": 0.0, "wait": 0.0}
        self.reader = reader or open_reader(source)

    def _views(self, idx: np.ndarray) -> np.ndarray:
        """[n*crops, 1, 3, t, t]: frame-major single-frame views of the frames at `idx`."""
        t0 = time.perf_counter()
        frames = self.reader.get(idx)
        t1 = time.perf_counter()
        x = self.transform(frames)  # crop-major [crops*n, 3, t, t]
        crops, n = self.p.crops, len(idx)
        x = x.reshape(crops, n, *x.shape[1:]).swapaxes(0, 1).reshape(n * crops, 1, *x.shape[1:])
        self.timings["decode"] += t1 - t0
        self.timings["preprocess"] += time.perf_counter() - t1
        return np.ascontiguousarray(x)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        """Logits [V, C] of V single-frame views, in runs of at most `batch_views` views."""
        from tsn_cli.deploy.predict import chunk_bounds

        t0 = time.perf_counter()
        limit = self.p.batch_views or len(x)
        out = np.concatenate([self.p.engine.run(x[s:e]) for s, e in chunk_bounds(len(x), limit)])
        self.timings["inference"] += time.perf_counter() - t0
        return out

    def chunks(self):
        """Yield (indices, logits [n, crops, C]) for every chunk of `frames`, in order.

        paddle.inference holds the GIL for a whole run, so a decoding thread would wait for it: for such an
        engine and a long enough video, decoding and preprocessing run in a spawned process instead."""
        parts = [self.frames[i : i + self.chunk] for i in range(0, len(self.frames), self.chunk)]
        if getattr(self.p.engine, "holds_gil", False) and len(parts) >= PROCESS_MIN_CHUNKS:
            for idx, x in self._process_views(parts):
                yield idx, self._infer(x).reshape(len(idx), self.p.crops, -1)
            return
        q: queue.Queue = queue.Queue(maxsize=2)  # bounded: at most two chunks of views wait
        stop = threading.Event()

        def produce():
            try:
                for idx in parts:
                    if stop.is_set():
                        return
                    q.put((idx, self._views(idx), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                q.put((None, None, exc))
            q.put(None)

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            while True:
                t0 = time.perf_counter()
                item = q.get()
                self.timings["wait"] += time.perf_counter() - t0
                if item is None:
                    return
                idx, x, exc = item
                if exc is not None:
                    raise exc
                yield idx, self._infer(x).reshape(len(idx), self.p.crops, -1)
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    worker.join(0.05)
            self.reader.close()

    def _process_views(self, parts: list):
        """(indices, views) of each part: the first PROCESS_HEAD_CHUNKS made here while a spawned child process
        starts, the rest made by the child and handed over through files in /dev/shm (at most two waiting:
        memory stays bounded)."""
        import multiprocessing as mp
        import shutil

        from tsn_cli.deploy.prefetch import shm_dir

        head, tail = parts[:PROCESS_HEAD_CHUNKS], parts[PROCESS_HEAD_CHUNKS:]
        ctx = mp.get_context("spawn")  # never fork a process that holds paddle/oneDNN thread pools
        out_dir = shm_dir()
        q = ctx.Queue(maxsize=2)
        params = {k: getattr(self.p, k) for k in ("crops", "short_side", "target_size", "mean", "std", "seg_num")}
        proc = ctx.Process(target=_views_worker, args=(self.src.path, tail, params, out_dir, q), daemon=True)
        proc.start()
        try:
            for idx in head:
                yield idx, self._views(idx)
            self.reader.close()  # the child reads the rest
            for idx in tail:
                t0 = time.perf_counter()
                while True:
                    try:
                        item = q.get(timeout=1.0)
                        break
                    except queue.Empty:
                        if not proc.is_alive():
                            raise DecodeError(self.src.path, "the decoding process died (out of memory?)") from None
                if item[0] == "error":
                    raise DecodeError(self.src.path, item[1])
                _, file, t_dec, t_pre = item
                x = np.load(file)
                os.unlink(file)
                self.timings["wait"] += time.perf_counter() - t0
                self.timings["decode"] += t_dec
                self.timings["preprocess"] += t_pre
                yield idx, x
        finally:
            if proc.is_alive():
                proc.terminate()
            proc.join(5)
            q.close()
            q.cancel_join_thread()
            shutil.rmtree(out_dir, ignore_errors=True)


def _views_worker(path: str, parts: list, params: dict, out_dir: str, q) -> None:
    """Child process: the views of each part of the frames of `path`, saved as .npy in `out_dir`, in order."""
    from types import SimpleNamespace

    from tsn_cli.data.video import open_source
    from tsn_cli.runtime import exit_with_parent

    exit_with_parent()
    try:
        import cv2

        cv2.setNumThreads(1)  # the parent's inference uses the cores
        os.nice(DECODE_NICE)
        with open_source(path, None) as src:
            fl = FrameLogits(SimpleNamespace(**params), src, np.concatenate(parts))
            for i, idx in enumerate(parts):
                before = dict(fl.timings)
                x = fl._views(idx)
                file = os.path.join(out_dir, f"{i}.npy")
                np.save(file, x)
                q.put(
                    (
                        "ok",
                        file,
                        fl.timings["decode"] - before["decode"],
                        fl.timings["preprocess"] - before["preprocess"],
                    )
                )
            fl.reader.close()
    except DecodeError as exc:
        q.put(("error", exc.reason))
    except Exception as exc:  # noqa: BLE001 - reported by the parent as this input's error
        q.put(("error", f"{type(exc).__name__}: {first_line(exc)}"))


def run_timeline(
    predictor,
    path: str,
    *,
    window: Span,
    stride: Span,
    threshold: float = 0.5,
    average: str = "logits",
    on_progress: Optional[Callable[[int, int], None]] = None,
) -> Timeline:
    """The timeline of one video file or frame folder with `predictor`'s engine and views (see the module
    docstring). `on_progress(done, total)` is called with distinct frames done. Raises DecodeError/ConfigError."""
    from tsn_cli.data.video import open_source

    p = Path(path)
    if not p.exists():
        raise DecodeError(path, "file not found")
    t_start = time.perf_counter()
    with open_source(str(p), None, verify=True) as src:
        fps = getattr(src, "fps", None)
        win = window.frames(fps, "--window")
        step = stride.frames(fps, "--stride")
        wins = plan_windows(src.num_frames, win, step, predictor.seg_num)
        distinct = np.unique(np.concatenate([w.frames for w in wins]))
        stream = FrameLogits(predictor, src, distinct)
        kept: dict[int, np.ndarray] = {}  # frame -> [crops, C], only while a pending window needs it
        probs: list[np.ndarray] = []
        done = 0
        for idx, logits in stream.chunks():
            kept.update(zip(idx.tolist(), logits, strict=True))
            last = int(idx[-1])
            while len(probs) < len(wins) and int(wins[len(probs)].frames.max()) <= last:
                w = wins[len(probs)]
                probs.append(window_scores(np.stack([kept[int(f)] for f in w.frames]), average))
                first_needed = int(wins[len(probs)].frames.min()) if len(probs) < len(wins) else last + 1
                for f in [f for f in kept if f < first_needed]:
                    del kept[f]
            done += len(idx)
            if on_progress:
                on_progress(done, len(distinct))
        warnings = list(src.warnings)
        num_frames = src.num_frames
    timings = dict(stream.timings, total=time.perf_counter() - t_start)
    return Timeline(
        str(path),
        fps,
        num_frames,
        wins[0].end - wins[0].start,
        step,
        predictor.seg_num,
        predictor.crops,
        average,
        threshold,
        list(predictor.names),
        np.array([w.start for w in wins]),
        np.array([w.end for w in wins]),
        np.stack(probs).astype(np.float32),
        int(len(distinct)),
        warnings,
        timings,
    )


def export_average(model_dir: Path | str) -> str:
    """`eval.average` of an export folder: its tsn.yaml's `average`, else its config.yaml's, else "logits"."""
    import yaml

    for name, get in (
        ("tsn.yaml", lambda d: d.get("average")),
        ("config.yaml", lambda d: (d.get("eval") or {}).get("average")),
    ):
        try:
            avg = get(yaml.safe_load((Path(model_dir) / name).read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if avg in ("logits", "scores"):
            return avg
    return "logits"

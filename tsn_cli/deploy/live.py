"""`tsn predict 0 | rtsp://... | http(s)://...`: live predictions over a rolling window of a camera or stream.

Frames come from OpenCV's capture (FFmpeg for network streams), read by a spawned child process (`LiveReader`)
so the source is drained in real time whatever the model does: paddle.inference keeps the GIL for a whole
forward pass, so a reading thread would only get a frame in per engine run and fall behind a fast stream. The
child keeps a rolling buffer of the latest `window + stride` frames (always the latest window on the stride
grid); frames pushed out of it before the model took them are dropped and counted. As in
`tsn_cli.deploy.timeline`, a window's logits are the mean of its frames' logits, so only the frames a coming
window samples (TSN test sampling of `window` frames, one window every `stride` frames) run through the engine,
once each, and a prediction is the mean of their logits when the window's last frame is in. A window that lost
a sampled frame to a drop is skipped (counted), so when the model is slower than the stream it predicts the
latest windows it can and the latency -- from the window's last frame's arrival to its prediction -- stays
bounded. A network stream that drops is reopened up to `reconnect` times in a row (the count restarts once
frames flow again), with a message each time.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np

from tsn_cli.data.sampling import segment_indices
from tsn_cli.deploy.timeline import Span, window_scores
from tsn_cli.errors import DecodeError, first_line
from tsn_cli.runtime import exit_with_parent

NETWORK_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
DEFAULT_FPS = 25.0  # when a stream does not say (then spans in seconds assume it, and a message says so)


def is_live(item: str) -> bool:
    """A webcam index ("0") or a network stream URL."""
    return str(item).isdigit() or str(item).lower().startswith(NETWORK_PREFIXES)


class LiveSource:
    """An OpenCV capture of a webcam or stream yielding RGB frames, reopening a dropped network stream."""

    def __init__(
        self, spec: str, reconnect: int = 3, on_message: Optional[Callable[[str], None]] = None, retry_wait: float = 0.5
    ):
        self.spec = str(spec)
        self.network = not self.spec.isdigit()
        self.reconnect = max(0, int(reconnect)) if self.network else 0
        self.say = on_message or (lambda m: None)
        self.retry_wait = retry_wait
        self.reconnects = 0
        self.ended = ""
        self.cap = self._open()
        if self.cap is None:
            raise DecodeError(
                self.spec,
                "cannot open the stream (nothing answers there, or it is not a video)"
                if self.network
                else "cannot open the camera (no such device, or it is busy)",
            )
        fps = float(self.cap.get(self._cv2.CAP_PROP_FPS) or 0)
        self.fps_known = 0 < fps < 1000
        self.fps = fps if self.fps_known else DEFAULT_FPS

    def _open(self):
        from tsn_cli.data.probe import cv2_quiet

        self._cv2 = cv2 = cv2_quiet()  # FFmpeg's own log lines silenced: drops are reported by us
        cap = cv2.VideoCapture(int(self.spec)) if not self.network else cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def frames(self) -> Iterator[np.ndarray]:
        """RGB uint8 frames until the source ends (after failed reconnects) or the consumer stops."""
        tries = 0
        while True:
            ok, bgr = self.cap.read() if self.cap is not None else (False, None)
            if ok and bgr is not None:
                tries = 0
                yield self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)
                continue
            if self.cap is not None:
                self.cap.release()
                self.cap = None
            if tries >= self.reconnect:
                self.ended = (
                    f"stream lost; {tries} reconnect attempt{'s' if tries != 1 else ''} failed"
                    if tries
                    else "end of stream"
                )
                return
            tries += 1
            self.reconnects += 1
            self.say(f"{self.spec}: stream dropped; reconnecting ({tries}/{self.reconnect})")
            time.sleep(self.retry_wait * tries)
            self.cap = self._open()

    def close(self) -> None:
        """Release the capture."""
        if self.cap is not None:
            self.cap.release()
            self.cap = None


@dataclass
class Batch:
    """What `LiveReader.take` hands over: new frames (index, arrival time on `time.monotonic`, RGB) in order,
    frames dropped so far, whether the source has ended (then `ended` says why) and reconnects so far."""

    frames: list
    dropped: int
    done: bool
    ended: str
    reconnects: int


class LiveReader:
    """A `LiveSource` read by a spawned child process into a rolling buffer of the latest `size` frames (set with
    `start`); `take()` hands over the frames that arrived since the last call. Raises DecodeError when the source
    cannot be opened."""

    def __init__(
        self, spec: str, reconnect: int = 3, on_message: Optional[Callable[[str], None]] = None, retry_wait: float = 0.5
    ):
        import multiprocessing as mp

        self.spec = str(spec)
        self.say = on_message or (lambda m: None)
        ctx = mp.get_context("spawn")  # never fork a process that holds paddle/oneDNN thread pools
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_reader_main, args=(child, self.spec, reconnect, retry_wait), daemon=True)
        self.proc.start()
        child.close()
        kind, *rest = self._recv()
        if kind == "error":
            self.close()
            raise DecodeError(self.spec, rest[0])
        self.fps, self.fps_known = rest

    def _recv(self):
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise DecodeError(self.spec, "the stream reader process died (out of memory?)") from None

    def start(self, size: int) -> None:
        """Start reading into a buffer of the latest `size` frames."""
        self.conn.send(("start", max(1, int(size))))

    def take(self) -> Batch:
        """The frames that arrived since the last call (waits for at least one, or for the end of the source)."""
        self.conn.send(("take",))
        while True:
            kind, *rest = self._recv()
            if kind == "message":
                self.say(rest[0])
            elif kind == "error":
                raise DecodeError(self.spec, rest[0])
            else:
                return Batch(*rest)

    def close(self) -> None:
        """Stop the child (it releases the capture)."""
        if self.proc.is_alive():
            try:
                self.conn.send(("stop",))
            except OSError:
                pass
            self.proc.join(3)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(3)
        self.conn.close()


def _reader_main(conn, spec: str, reconnect: int, retry_wait: float) -> None:
    """Child process: open `spec`, then read it in a thread into a deque(maxlen=size) while answering `take`s."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops us
    exit_with_parent()  # ... and a killed parent must not leave us reading the stream for good
    cond = threading.Condition()
    messages: list[str] = []

    def say(text: str) -> None:
        with cond:
            messages.append(text)
            cond.notify()

    try:
        src = LiveSource(spec, reconnect, on_message=say, retry_wait=retry_wait)
    except DecodeError as exc:
        conn.send(("error", exc.reason))
        return
    except Exception as exc:  # noqa: BLE001 - reported by the parent as the source's error
        conn.send(("error", f"{type(exc).__name__}: {first_line(exc)}"))
        return
    conn.send(("open", src.fps, src.fps_known))
    kind, *rest = conn.recv()
    if kind != "start":
        src.close()
        return
    buf: deque = deque(maxlen=rest[0])
    state = {"read": 0, "sent": 0, "dropped": 0, "done": False, "stop": False, "error": ""}

    def read() -> None:
        try:
            for frame in src.frames():
                with cond:
                    if state["stop"]:
                        break
                    if len(buf) == buf.maxlen and buf[0][0] >= state["sent"]:
                        state["dropped"] += 1  # pushed out before the model took it
                    buf.append((state["read"], time.monotonic(), frame))
                    state["read"] += 1
                    cond.notify()
        except Exception as exc:  # noqa: BLE001 - handed to the parent
            state["error"] = f"{type(exc).__name__}: {first_line(exc)}"
        finally:
            src.close()
            with cond:
                state["done"] = True
                cond.notify()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while True:
        kind, *_ = conn.recv()
        if kind != "take":
            with cond:
                state["stop"] = True
            reader.join(2)
            return
        with cond:
            cond.wait_for(lambda: messages or state["done"] or state["read"] > state["sent"])
            for text in messages:
                conn.send(("message", text))
            messages.clear()
            if state["error"]:
                conn.send(("error", state["error"]))
                return
            new = [item for item in buf if item[0] >= state["sent"]]
            state["sent"] = state["read"]
            done = state["done"] and not new
        if not new and not done:
            conn.send(("batch", [], state["dropped"], False, "", src.reconnects))
            continue
        conn.send(("batch", new, state["dropped"], done, src.ended, src.reconnects))


@dataclass
class LiveStats:
    """What a live run did, for the closing summary."""

    source: str
    frames: int = 0
    predictions: int = 0
    dropped: int = 0
    skipped: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    latencies: list = field(default_factory=list)
    ended: str = ""

    def to_json(self) -> dict:
        lat = self.latencies
        return {
            "source": self.source,
            "frames": self.frames,
            "predictions": self.predictions,
            "dropped_frames": self.dropped,
            "skipped_windows": self.skipped,
            "reconnects": self.reconnects,
            "seconds": round(self.seconds, 3),
            "fps": round(self.frames / self.seconds, 2) if self.seconds > 0 else None,
            "latency_ms_mean": round(1000 * float(np.mean(lat)), 2) if lat else None,
            "latency_ms_max": round(1000 * float(np.max(lat)), 2) if lat else None,
            "ended": self.ended,
        }


class _Logits:
    """Per-crop logits [crops, C] of single frames, in batches of at most `batch_views` views."""

    def __init__(self, predictor):
        from tsn_cli.deploy.predict import view_transform

        self.p = predictor
        self.tf = view_transform(predictor)

    def __call__(self, frames: list) -> np.ndarray:
        from tsn_cli.deploy.predict import chunk_bounds

        x = np.concatenate([self.tf(f[None]) for f in frames])[:, None]  # frame-major [n*crops, 1, 3, t, t]
        limit = self.p.batch_views or len(x)
        out = np.concatenate([self.p.engine.run(x[s:e]) for s, e in chunk_bounds(len(x), limit)])
        return out.reshape(len(frames), self.p.crops, -1).astype(np.float32)


def run_live(
    predictor,
    reader: LiveReader,
    *,
    window: Span,
    stride: Span,
    average: str = "logits",
    on_prediction: Callable[[dict], None],
    stats: LiveStats,
) -> LiveStats:
    """Predict over the last `window` every `stride` until the source ends or Ctrl-C (KeyboardInterrupt is
    caught: the run stops cleanly). `on_prediction(doc)` gets {"index", "frame", "time", "top_k", "latency_ms",
    "fps", "dropped"} per window; `stats` is filled in as it goes."""
    win = window.frames(reader.fps, "--window")
    step = stride.frames(reader.fps, "--stride")
    offsets = segment_indices(win, predictor.seg_num, train=False).tolist()
    logits = _Logits(predictor)
    kept: dict[int, np.ndarray] = {}  # frame -> [crops, C], while a coming window needs it
    start = 0  # the next window's first frame (a multiple of `step`)

    def sampled(f: int) -> bool:
        return any(f - o >= start and (f - o) % step == 0 for o in offsets)

    t0 = time.monotonic()
    try:
        # one-time engine set-up (oneDNN kernels for this shape) before the stream starts, not on its first window
        logits([np.zeros((predictor.target_size,) * 2 + (3,), np.uint8)])
        reader.start(win + step)  # the latest window on the stride grid is always whole in the buffer
        while True:
            got = reader.take()
            stats.dropped, stats.reconnects = got.dropped, got.reconnects
            if got.done:
                stats.ended = got.ended or "end of stream"
                break
            if not got.frames:
                continue
            first, newest = got.frames[0][0], got.frames[-1][0]
            stats.frames = newest + 1
            # windows that lost a sampled frame to a drop can no longer be predicted: go on from the first whole one
            while start + win - 1 <= newest and any(start + o < first and start + o not in kept for o in offsets):
                start += step
                stats.skipped += 1
            todo: list = []
            for f, arrived, frame in got.frames:
                if sampled(f):
                    todo.append((f, frame))
                while start + win - 1 <= f:  # a window whose last frame is in (or was dropped just before f)
                    if todo:
                        kept.update(zip([g for g, _ in todo], logits([fr for _, fr in todo]), strict=True))
                        todo = []
                    if all(start + o in kept for o in offsets):
                        probs = window_scores(np.stack([kept[start + o] for o in offsets]), average)
                        latency = time.monotonic() - arrived
                        stats.seconds = time.monotonic() - t0
                        stats.latencies.append(latency)
                        on_prediction(_doc(predictor, probs, stats, start + win, reader.fps, latency))
                        stats.predictions += 1
                    else:
                        stats.skipped += 1
                    start += step
                    for old in [k for k in kept if k < start]:
                        del kept[old]
            if todo:  # sampled frames of windows not yet whole: their logits now, while the stream goes on
                kept.update(zip([g for g, _ in todo], logits([fr for _, fr in todo]), strict=True))
    except KeyboardInterrupt:
        stats.ended = "interrupted (Ctrl-C)"
    finally:
        reader.close()
        stats.seconds = time.monotonic() - t0
    return stats


def _doc(predictor, probs: np.ndarray, stats: LiveStats, frame: int, fps: float, latency: float) -> dict:
    """One prediction's JSON line."""
    k = min(predictor.top_k, len(probs))
    names = predictor.names
    return {
        "index": stats.predictions,
        "frame": frame,
        "time": round(frame / fps, 3),
        "top_k": [
            {"class_id": int(c), "label": names[c] if c < len(names) else str(int(c)), "score": float(probs[c])}
            for c in np.argsort(-probs, kind="stable")[:k]
        ],
        "latency_ms": round(latency * 1000, 2),
        "fps": round(stats.frames / stats.seconds, 2) if stats.seconds > 0 else None,
        "dropped": stats.dropped,
    }

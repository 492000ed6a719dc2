"""Frame sources: read only the sampled frames of a video file or a JPEG frame folder.

* Videos are read with decord ``VideoReader(num_threads=1)`` and ``get_batch(indices)``: only the sampled
  frames are decoded (decord seeks to the nearest key frame), never the whole video. The frame count is
  ``len(reader)``, as PaddleVideo's decord backend uses.
* Frame folders hold ``frame_template.format(i)`` files with 1-based ``i`` (``img_00001.jpg`` ...), as
  PaddleVideo's FrameDataset expects. Each JPEG is decoded with ``cv2.imdecode(..., IMREAD_COLOR_RGB)``;
  with the libjpeg-turbo builds of this environment the pixels equal ``PIL.Image.open(p).convert('RGB')``
  (PaddleVideo's decoder) exactly -- ``tests/test_dataset.py`` checks it on every run, so a drift in a
  future build shows up as a test failure.

Every problem becomes ``DecodeError(path, reason)``: missing or empty file/folder, a file that is not a
video, a frame that cannot be decoded, a truncated JPEG (no end-of-image marker after the last scan -- cv2
would silently return a grey-padded image), a frame index past the real end of a truncated video, or frames
of different sizes.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from tsn_cli.errors import DecodeError, first_line

DEFAULT_FRAME_TEMPLATE = "img_{:05}.jpg"

_DECORD_QUIET = False


def _decord():
    """Import decord once, with ffmpeg's own log output silenced (decode failures are reported by us)."""
    global _DECORD_QUIET
    import decord

    if not _DECORD_QUIET:
        try:
            decord.logging.set_level(decord.logging.QUIET)
        except Exception:  # pragma: no cover - older decord
            pass
        _DECORD_QUIET = True
    return decord


class FrameSource:
    """Base class: ``.path``, ``.num_frames`` and ``.get(indices) -> uint8 [T, H, W, 3]`` RGB.

    Usable as a context manager; `close` releases the decoder.
    """

    path: str
    num_frames: int

    def get(self, indices: Sequence[int]) -> np.ndarray:  # pragma: no cover - abstract
        """Decode the frames at 0-based ``indices`` (repeats allowed) into one uint8 array."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (no-op by default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _check_indices(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError("no frame indices given")
        if idx.min() < 0 or idx.max() >= self.num_frames:
            raise DecodeError(self.path, f"frame index {int(idx.max() if idx.max() >= self.num_frames else idx.min())} "
                                         f"outside 0..{self.num_frames - 1}")
        return idx


class VideoFileSource(FrameSource):
    """A video file read with decord (one decoding thread: fastest per clip and leaves cores to workers)."""

    def __init__(self, path: str):
        self.path = str(path)
        if not os.path.exists(self.path):
            raise DecodeError(self.path, "file not found")
        if os.path.isdir(self.path):
            raise DecodeError(self.path, "is a folder, expected a video file (frame folders need the frames format)")
        try:
            size = os.path.getsize(self.path)
        except OSError as exc:
            raise DecodeError(self.path, f"cannot read ({exc.strerror or exc})") from exc
        if size == 0:
            raise DecodeError(self.path, "file is empty")
        decord = _decord()
        try:
            self._reader = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)
            self.num_frames = int(len(self._reader))
        except Exception as exc:
            raise DecodeError(self.path, f"cannot open as a video ({_short(exc)})") from None
        if self.num_frames <= 0:
            self.close()
            raise DecodeError(self.path, "video has no frames")

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """Decode only ``indices`` with ``get_batch``; a failure (e.g. past the real end of a truncated file)
        raises DecodeError."""
        idx = self._check_indices(indices)
        try:
            frames = self._reader.get_batch(idx.tolist()).asnumpy()
        except Exception as exc:
            # decord 0.6 fails on some valid frame sizes (e.g. 48x40: "DECORDArrayCopyFromTo: The size must
            # exactly match"); OpenCV decodes those. A really truncated file fails there too.
            frames = _read_with_cv2(self.path, idx)
            if frames is None:
                raise DecodeError(self.path, f"decoding frames failed, video truncated or corrupt ({_short(exc)})") from None
        if frames.ndim != 4 or frames.shape[0] != idx.size or frames.shape[-1] != 3:
            raise DecodeError(self.path, f"decoder returned an unexpected array {tuple(frames.shape)}")
        return np.ascontiguousarray(frames, dtype=np.uint8)

    def close(self) -> None:
        """Drop the decord reader (frees its decoder and buffers)."""
        self._reader = None


class FrameFolderSource(FrameSource):
    """A folder of frame images named ``frame_template.format(i)``, ``i = 1..num_frames``.

    ``num_frames`` comes from the list file when known (as PaddleVideo, the folder is not listed);
    otherwise the files ``template(1), template(2), ...`` are counted.
    """

    def __init__(self, path: str, num_frames: int | None = None, frame_template: str = DEFAULT_FRAME_TEMPLATE):
        self.path = str(path)
        self.template = frame_template
        if not os.path.isdir(self.path):
            reason = "frame folder not found" if not os.path.exists(self.path) else "not a folder (videos need the video format)"
            raise DecodeError(self.path, reason)
        if num_frames is None:
            num_frames = count_frames(self.path, frame_template)
        self.num_frames = int(num_frames)
        if self.num_frames <= 0:
            raise DecodeError(self.path, f"no frames named like {frame_template.format(1)}")

    def frame_path(self, index: int) -> str:
        """File of 0-based frame ``index`` (file names are 1-based)."""
        return os.path.join(self.path, self.template.format(int(index) + 1))

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """Decode the frames at 0-based ``indices``; each distinct frame is read once."""
        idx = self._check_indices(indices)
        cache: dict[int, np.ndarray] = {}
        out = None
        for k, i in enumerate(idx.tolist()):
            img = cache.get(i)
            if img is None:
                img = cache[i] = decode_image_file(self.frame_path(i), self.path)
            if out is None:
                out = np.empty((idx.size,) + img.shape, dtype=np.uint8)
            elif img.shape != out.shape[1:]:
                raise DecodeError(self.path, f"frame sizes differ ({self.template.format(i + 1)} is "
                                             f"{img.shape[1]}x{img.shape[0]}, first is {out.shape[2]}x{out.shape[1]})")
            out[k] = img
        return out


def count_frames(folder: str, frame_template: str = DEFAULT_FRAME_TEMPLATE) -> int:
    """Number of consecutive frame files ``template(1), template(2), ...`` in ``folder``."""
    try:
        names = set(os.listdir(folder))
    except OSError as exc:
        raise DecodeError(folder, f"cannot list folder ({exc.strerror or exc})") from exc
    n = 0
    while frame_template.format(n + 1) in names:
        n += 1
    return n


def decode_image_file(file: str, owner: str | None = None) -> np.ndarray:
    """Decode one image file to uint8 RGB ``[H, W, 3]``; problems raise DecodeError naming ``owner``
    (the frame folder) or the file."""
    import cv2

    where = owner or file
    name = os.path.basename(file)
    try:
        with open(file, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise DecodeError(where, f"missing frame {name}") from None
    except OSError as exc:
        raise DecodeError(where, f"cannot read frame {name} ({exc.strerror or exc})") from None
    if not data:
        raise DecodeError(where, f"frame {name} is empty")
    if data[:2] == b"\xff\xd8":
        # cv2 decodes a truncated JPEG without error (grey fill); PIL (PaddleVideo) raises. The end-of-image
        # marker FF D9 cannot occur inside entropy-coded data, so it must follow the last start-of-scan.
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            raise DecodeError(where, f"frame {name} is truncated")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR_RGB)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise DecodeError(where, f"frame {name} cannot be decoded")
    return img


def open_source(record_or_path, fmt: str | None = None, frame_template: str = DEFAULT_FRAME_TEMPLATE) -> FrameSource:
    """Open a `VideoRecord` or a path as a `FrameSource`.

    ``fmt`` is ``"video"``, ``"frames"`` or None (a folder is a frame folder, anything else a video).
    Frame counts of records from a frames list are taken from the list. Raises DecodeError.
    """
    path = getattr(record_or_path, "path", record_or_path)
    path = os.fspath(path)
    num_frames = getattr(record_or_path, "num_frames", None)
    if fmt is None:
        fmt = "frames" if os.path.isdir(path) else "video"
    if fmt == "video":
        return VideoFileSource(path)
    if fmt == "frames":
        return FrameFolderSource(path, num_frames, frame_template)
    raise ValueError(f"unknown format {fmt!r} (allowed: video, frames)")


def _read_with_cv2(path: str, idx: np.ndarray) -> np.ndarray | None:
    """Fallback decoder: read the video sequentially with OpenCV up to the last wanted frame and keep the
    wanted ones (RGB). None when any wanted frame cannot be read (truncated/corrupt file)."""
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            return None
        wanted = set(idx.tolist())
        got: dict[int, np.ndarray] = {}
        last = int(idx.max())
        for i in range(last + 1):
            if not cap.grab():
                return None
            if i in wanted:
                ok, bgr = cap.retrieve()
                if not ok or bgr is None or bgr.ndim != 3:
                    return None
                got[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        shapes = {a.shape for a in got.values()}
        if len(shapes) != 1:
            return None
        return np.stack([got[i] for i in idx.tolist()])
    except cv2.error:
        return None
    finally:
        cap.release()


def _short(exc: BaseException) -> str:
    """A one-line, bounded summary of a decoder exception (decord messages carry C++ stack noise)."""
    msg = first_line(exc, 10_000)
    if "Error reading" in msg:
        return "unreadable or unsupported container"
    for key in ("Error sending packet", "Check failed", "av_read_frame", "seek"):
        if key in msg:
            return "decoder error: " + key
    return msg[:120]

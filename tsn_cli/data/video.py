"""Frame sources: read only the sampled frames of a video file or a JPEG frame folder.

* Videos are opened and indexed once with PyAV (`tsn_cli.data.access.OpenVideo`) and their sampled frames
  decoded by the frame-access planner: each distinct frame once, one forward pass or one seek per group of
  pictures, whichever is cheaper -- the same frames and pixels as decord's ``get_batch`` (proved by
  ``tests/test_access.py`` on every real clip). When the index is complete (MP4/MOV/AVI, every packet whole, as
  many as the header claims) its packet count is decord's ``len(reader)`` (decord counts the packets it
  demuxes) and decord is not opened. Otherwise decord ``VideoReader(num_threads=1)`` gives the frame count, as
  PaddleVideo's decord backend uses, and the planner serves the frames when its index agrees; when PyAV is
  missing, the index disagrees with decord's count, or the planned read fails, decord's ``get_batch`` decodes
  them as before; ``TSN_FRAME_ACCESS=decord`` forces that.
* Frame folders hold ``frame_template.format(i)`` files with 1-based ``i`` (``img_00001.jpg`` ...), as
  PaddleVideo's FrameDataset expects. Each JPEG is decoded with ``cv2.imdecode(..., IMREAD_COLOR_RGB)``;
  with the libjpeg-turbo builds of this environment the pixels equal ``PIL.Image.open(p).convert('RGB')``
  (PaddleVideo's decoder) exactly -- ``tests/test_dataset.py`` checks it on every run, so a drift in a
  future build shows up as a test failure.

Every problem becomes ``DecodeError(path, reason)``: missing or empty file/folder, a file that is not a
video, a frame that cannot be decoded, a truncated JPEG (no end-of-image marker after the last scan -- cv2
would silently return a grey-padded image), a frame index past the real end of a truncated video, or frames
of different sizes. Reasons are our own words: decoder exception text is reduced by `_short` (no C++ source
paths, no log prefixes).

Test-time reads (predict, eval) open videos with ``verify=True``: a file that does not decode at all is "not a
video" before decord sees it (decord's C++ log lines would otherwise reach stderr), and a video that decodes
only partly (truncated: the container's packets give more frames than the decoder reaches) is read from the frames
that decode, with the reason in ``source.warnings``. The verdict is `prepare check`'s (`check_video`), taken
from an actual decode, never from the container's frame count alone -- except that a complete index proves
every frame's data is in the file, and the first read's decode pass proves it decodes: a failure there takes
the previous path, whose verdict then stands. Opening a video (the packet scan, the vetting) has one time
budget (`tsn_cli.data.budget`); so has each read of the planner.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np

from tsn_cli.constants import FRAME_TEMPLATE
from tsn_cli.errors import DecodeError, first_line

NOT_A_VIDEO = "not a video (no decodable video stream)"

_DECORD_QUIET = False
FRAME_ACCESS_ENV = "TSN_FRAME_ACCESS"


class FrameCountChanged(DecodeError):
    """The first read found that a verified video decodes fewer frames than it indexes: ``num_frames`` is now
    the decodable count and the caller must sample again (`views.load_clip` does)."""


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

    ``.warnings``: problems that did not stop the read (e.g. a truncated video read from its decodable
    frames). Usable as a context manager; `close` releases the decoder.
    """

    path: str
    num_frames: int
    fps: float | None = None  # frames per second when the source knows it (videos; not frame folders)
    warnings: tuple[str, ...] = ()

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
            raise DecodeError(
                self.path,
                f"frame index {int(idx.max() if idx.max() >= self.num_frames else idx.min())} "
                f"outside 0..{self.num_frames - 1}",
            )
        return idx


class VideoFileSource(FrameSource):
    """A video file read by the frame-access planner (PyAV), else decord (one decoding thread).

    One container is opened and indexed (`access.OpenVideo`) and serves every read. When that index is complete
    (every packet whole and as many as the header claims, in an MP4/MOV/AVI) it gives the frame count decord
    would (decord counts the packets it demuxes) and proves the last frame's data is in the file, so neither
    decord nor `prepare check`'s probe is opened: the first read's decode pass is the decodability check. Any
    other index, or a planned read that fails, takes the previous path: ``verify=True`` (test-time reads) checks
    that the file decodes and that the decoder reaches the frames the container claims (see the module
    docstring); a partly decodable video is then sampled over the frames that decode, with the reason in
    ``warnings``.
    """

    def __init__(self, path: str, verify: bool = False):
        self.path = str(path)
        if not os.path.exists(self.path):
            raise DecodeError(self.path, "file not found")
        if os.path.isdir(self.path):
            raise DecodeError(self.path, "is a folder, expected a video file (frame folders need the frames format)")
        from tsn_cli.fsutil import special_kind

        kind = special_kind(self.path)
        if kind:  # a named pipe would hang the decoder, a device (/dev/zero) never end
            raise DecodeError(self.path, f"is {kind}, not a regular file")
        try:
            size = os.path.getsize(self.path)
        except OSError as exc:
            raise DecodeError(self.path, f"cannot read ({exc.strerror or exc})") from exc
        if size == 0:
            raise DecodeError(self.path, "file is empty")
        from tsn_cli.data.budget import Budget

        # One time budget for the file: the container's open and packet scan (what the decoder should reach, and
        # the planner's index) and the vetting are bounded by it; decord's open cannot be interrupted, but it
        # reads what the scan did.
        self._budget = Budget()
        self._verify = verify
        self._reader = None  # decord, opened only on the previous path (or for the frame rate)
        self._fps: float | None = None
        self._fps_known = False
        self._reach_pending = False
        self._video = _open_video(self.path, self._budget)
        self._scan = self._video.scan if self._video is not None else None
        self._index = self._video.index if self._video is not None else None
        # a training worker runs one per core: its decoder stays single-threaded; test-time reads may use threads
        self._threads = None if verify else 1
        if self._index is not None and self._index.complete:
            self.num_frames = self._index.num_frames
            return
        self._open_decord()

    def _open_decord(self) -> None:
        """The previous path: vet (verify), decord's reader and frame count, and the reach check -- joined to the
        first planned read when the index agrees with decord's count, else now."""
        from tsn_cli.data.probe import container_scan

        if self._scan is None:
            self._scan = container_scan(self.path, self._budget)
        claimed = self._vet(self._scan) if self._verify else None
        decord = _decord()
        from tsn_cli.fsutil import c_path
        from tsn_cli.ui import sanitised_native_stderr

        try:
            # decord logs "ERROR opening: NAME" itself, escapes in NAME included: that line is noise (our reason
            # says it), anything else it writes is shown sanitised; a name that is not UTF-8 would crash it.
            with sanitised_native_stderr(drop=_is_decord_log), c_path(self.path) as name:
                self._reader = decord.VideoReader(name, ctx=decord.cpu(0), num_threads=1)
            self.num_frames = int(len(self._reader))
        except Exception:
            self.close()
            raise DecodeError(self.path, NOT_A_VIDEO) from None
        self._fps_known = False
        if self.num_frames <= 0:
            self.close()
            raise DecodeError(self.path, "video has no frames")
        if self._index is not None and self._index.num_frames != self.num_frames:
            self._drop_planner()  # the planner must address the same frames as decord
        if self._verify:
            from tsn_cli.data.probe import truncation_reason

            if truncation_reason(self.num_frames, claimed) is None:
                # joined to the first read, the planner's or decord's (`_decord_read`): decoding on from the last
                # wanted frame costs less than a separate seek back to the last group of pictures' key frame
                self._reach_pending = True
            else:
                self._check_reach(claimed)

    @property
    def fps(self) -> float | None:
        """Frames per second as decord reports them (its reader is opened for this when the planner serves
        the frames); None when the container gives no frame rate."""
        if not self._fps_known:
            self._fps_known = True
            try:
                if self._reader is None:
                    decord = _decord()
                    from tsn_cli.fsutil import c_path
                    from tsn_cli.ui import sanitised_native_stderr

                    with sanitised_native_stderr(drop=_is_decord_log), c_path(self.path) as name:
                        reader = decord.VideoReader(name, ctx=decord.cpu(0), num_threads=1)
                else:
                    reader = self._reader
                self._fps = float(reader.get_avg_fps()) or None
            except Exception:  # noqa: BLE001 - no frame rate in the container: only frame spans work
                self._fps = None
        return self._fps

    def _vet(self, scan) -> int | None:
        """Open and decode the first frame with `prepare check`'s decoder (quiet, unlike decord's C++ log);
        returns the frames the decoder should reach (`Scan.expected`). Raises DecodeError for a file that does
        not decode, VideoTimeout when that takes longer than the budget."""
        from tsn_cli.data.probe import check_video

        probe = check_video(self.path, full=False, budget=self._budget, scan=scan, raise_timeout=True)
        if not probe.ok:
            # A stream that opens but yields no frame keeps `prepare check`'s words; anything else is not a video.
            raise DecodeError(self.path, probe.reason if probe.claimed else NOT_A_VIDEO)
        return probe.claimed

    def _check_reach(self, claimed: int | None, budget=None) -> None:
        """If the decoder's last frame does not decode, or it indexes fewer frames than the container claims,
        count the frames that really decode (`prepare check`'s full check, within ``budget``: the open's if None)
        and sample over those only."""
        from tsn_cli.data.probe import check_video, truncation_reason

        try:
            self._reader.get_batch([self.num_frames - 1])
            if truncation_reason(self.num_frames, claimed) is None:
                return  # the decoder reaches its last frame and the container claims no more
        except Exception:  # noqa: BLE001 - the last frame is unreachable: count below
            pass
        full = check_video(self.path, full=True, budget=budget or self._budget, raise_timeout=True)
        if full.frames == 0:
            raise DecodeError(self.path, NOT_A_VIDEO)
        self.num_frames = min(self.num_frames, full.frames)
        if not full.ok:
            self.warnings = (f"{full.reason}; sampled from those {self.num_frames}",)

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """Decode only ``indices``, each distinct frame once (planner, else ``get_batch``); a failure (e.g. past
        the real end of a truncated file) raises DecodeError; `FrameCountChanged` when the first read of a
        verified video finds it shorter than indexed."""
        idx = self._check_indices(indices)
        uniq, inverse = np.unique(idx, return_inverse=True)
        frames = self._planned(uniq.tolist())
        if frames is None:
            if self._reader is None:  # the planned read failed on a complete index: the previous path decides
                before = self.num_frames
                self._drop_planner()
                self._open_decord()
                if self.num_frames != before:
                    raise FrameCountChanged(self.path, f"decodes {self.num_frames} of {before} frames; sample again")
            frames = self._decord_read(uniq)
        if frames.ndim != 4 or frames.shape[0] != uniq.size or frames.shape[-1] != 3:
            raise DecodeError(self.path, f"decoder returned an unexpected array {tuple(frames.shape)}")
        return np.ascontiguousarray(frames[inverse.reshape(-1)], dtype=np.uint8)

    def _planned(self, wanted: list[int]) -> np.ndarray | None:
        """The frames ``wanted`` (sorted, distinct) by the planner, or None to use decord. Runs the pending reach
        check: the last frame joins the same decode pass (on a complete index, only when it is a few frames
        past the last wanted one in the same group of pictures: the index already proved its data is there)."""
        from tsn_cli.data import access
        from tsn_cli.data.budget import Budget

        if self._index is None:
            return None
        last = self.num_frames - 1
        pending, self._reach_pending = self._reach_pending, False
        near = self._verify and self._index.complete and _near_end(self._index, wanted, last)
        budget = Budget(self._budget.seconds)  # each read has the whole budget: a timeline reads a file many times
        got = None
        try:
            got = access.read_frames(
                self._video,
                self._index,
                sorted({*wanted, last}) if pending or near else wanted,
                self._threads,
                budget=budget,
            )
        except access.AccessError:
            if self._reader is not None:
                self._drop_planner()  # decord is open: later reads of this file go to it straight away
        if pending and got is None:
            self._reach_pending = True  # decord's read joins it
            return None
        if pending and last not in got:
            before = self.num_frames
            self._check_reach(None, budget)  # decord's verdict, counting the decodable frames if the last one fails
            if self.num_frames != before:
                self._drop_planner()
                raise FrameCountChanged(self.path, f"decodes {self.num_frames} of {before} frames; sample again")
        if got is None or len({got[i].shape for i in wanted}) != 1:
            return None  # frame sizes differ: decord's path reports it
        return np.stack([got[i] for i in wanted])

    def _drop_planner(self) -> None:
        self._index = None
        if self._video is not None:
            self._video.close()
            self._video = None

    def _decord_read(self, uniq: np.ndarray) -> np.ndarray:
        """decord's ``get_batch`` of ``uniq`` (sorted, distinct); a pending reach check joins the same call (decord
        decodes on to the last frame; a separate check would seek back to its group's key frame and decode it all
        again: 206 frames more on opencv-doc's box.mp4). If that call fails, `_check_reach` decides as before."""
        if not self._reach_pending:
            return self._get_batch(uniq)
        self._reach_pending = False
        last = self.num_frames - 1
        ids = uniq.tolist() if uniq[-1] == last else [*uniq.tolist(), last]
        try:
            return self._reader.get_batch(ids).asnumpy()[: uniq.size]
        except Exception:  # noqa: BLE001 - the last frame or a wanted one fails: the separate check decides
            pass
        before = self.num_frames
        self._check_reach(None)
        if self.num_frames != before:
            raise FrameCountChanged(self.path, f"decodes {self.num_frames} of {before} frames; sample again")
        return self._get_batch(uniq)

    def _get_batch(self, idx: np.ndarray) -> np.ndarray:
        try:
            frames = self._reader.get_batch(idx.tolist()).asnumpy()
        except Exception as exc:
            # decord 0.6 fails on some valid frame sizes (e.g. 48x40: "DECORDArrayCopyFromTo: The size must
            # exactly match"); OpenCV decodes those. A really truncated file fails there too.
            frames = _read_with_cv2(self.path, idx)
            if frames is None:
                raise DecodeError(
                    self.path, f"decoding frames failed, video truncated or corrupt ({_short(exc)})"
                ) from None
        return frames

    def close(self) -> None:
        """Close the container and drop the decord reader (frees decoders and buffers)."""
        self._reader = None
        if getattr(self, "_video", None) is not None:
            self._video.close()


def _near_end(index, wanted: list[int], last: int) -> bool:
    """Whether decoding on from the last wanted frame to the video's last frame costs a few frames at most."""
    from tsn_cli.data.access import SEEK_COST_FRAMES

    if not wanted or wanted[-1] == last:
        return False
    return last - wanted[-1] <= SEEK_COST_FRAMES and not any(wanted[-1] < k <= last for k in index.keyframes)


def _open_video(path: str, budget):
    """The open, scanned container for the planner, or None (PyAV missing, ``TSN_FRAME_ACCESS=decord``, or PyAV
    cannot open it as a video). Raises VideoTimeout when ``budget`` runs out."""
    if os.environ.get(FRAME_ACCESS_ENV, "").strip().lower() == "decord":
        return None
    try:
        from tsn_cli.data.access import AccessError, OpenVideo

        return OpenVideo(path, budget)
    except (ImportError, AccessError):
        return None


class FrameFolderSource(FrameSource):
    """A folder of frame images named ``frame_template.format(i)``, ``i = 1..num_frames``.

    ``num_frames`` comes from the list file when known (as PaddleVideo, the folder is not listed);
    otherwise the files ``template(1), template(2), ...`` are counted.
    """

    def __init__(self, path: str, num_frames: int | None = None, frame_template: str = FRAME_TEMPLATE):
        self.path = str(path)
        self.template = frame_template
        if not os.path.isdir(self.path):
            reason = (
                "frame folder not found"
                if not os.path.exists(self.path)
                else "not a folder (videos need the video format)"
            )
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
                raise DecodeError(
                    self.path,
                    f"frame sizes differ ({self.template.format(i + 1)} is "
                    f"{img.shape[1]}x{img.shape[0]}, first is {out.shape[2]}x{out.shape[1]})",
                )
            out[k] = img
        return out


def count_frames(folder: str, frame_template: str = FRAME_TEMPLATE) -> int:
    """Number of consecutive frame files ``template(1), template(2), ...`` in ``folder``."""
    try:
        names = set(os.listdir(folder))
    except OSError as exc:
        raise DecodeError(folder, f"cannot list folder ({exc.strerror or exc})") from exc
    n = 0
    while frame_template.format(n + 1) in names:
        n += 1
    return n


def read_frame_bytes(file: str, owner: str | None = None) -> bytes:
    """The bytes of one frame image, checked as eval, predict and `prepare check` all check frames: a regular
    file (a FIFO would hang, a symlink to /dev/zero fill memory) of at most `MAX_FRAME_BYTES`, not empty, and
    a JPEG (by content, whatever its name) with its end-of-image marker. Raises DecodeError naming `owner`."""
    from tsn_cli.fsutil import MAX_FRAME_BYTES, read_regular_file

    where = owner or file
    name = os.path.basename(file)
    if not os.path.lexists(file):
        raise DecodeError(where, f"missing frame {name}")
    data = read_regular_file(file, MAX_FRAME_BYTES, "frame", lambda msg: DecodeError(where, msg), shown=f"frame {name}")
    if not data:
        raise DecodeError(where, f"frame {name} is empty")
    if data[:2] == b"\xff\xd8":
        # cv2 decodes a truncated JPEG without error (grey fill); PIL (PaddleVideo) raises. The end-of-image
        # marker FF D9 cannot occur inside entropy-coded data, so it must follow the last start-of-scan.
        end = data.rfind(b"\xff\xd9")
        if end < 0 or end < data.rfind(b"\xff\xda"):
            raise DecodeError(where, f"frame {name} is truncated")
    return data


def decode_image_file(file: str, owner: str | None = None) -> np.ndarray:
    """Decode one image file to uint8 RGB ``[H, W, 3]``; problems raise DecodeError naming ``owner``
    (the frame folder) or the file."""
    import cv2

    where = owner or file
    name = os.path.basename(file)
    data = read_frame_bytes(file, owner)
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR_RGB)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise DecodeError(where, f"frame {name} cannot be decoded")
    return img


def open_source(
    record_or_path, fmt: str | None = None, frame_template: str = FRAME_TEMPLATE, verify: bool = False
) -> FrameSource:
    """Open a `VideoRecord` or a path as a `FrameSource`.

    ``fmt`` is ``"video"``, ``"frames"`` or None (a folder is a frame folder, anything else a video).
    Frame counts of records from a frames list are taken from the list. ``verify``: check videos for partial
    decodability (see `VideoFileSource`). Raises DecodeError.
    """
    path = getattr(record_or_path, "path", record_or_path)
    path = os.fspath(path)
    num_frames = getattr(record_or_path, "num_frames", None)
    if fmt is None:
        fmt = "frames" if os.path.isdir(path) else "video"
    if fmt == "video":
        return VideoFileSource(path, verify=verify)
    if fmt == "frames":
        return FrameFolderSource(path, num_frames, frame_template)
    raise ValueError(f"unknown format {fmt!r} (allowed: video, frames)")


def _read_with_cv2(path: str, idx: np.ndarray) -> np.ndarray | None:
    """Fallback decoder: read the video sequentially with OpenCV up to the last wanted frame and keep the
    wanted ones (RGB). None when any wanted frame cannot be read (truncated/corrupt file)."""
    from tsn_cli.data.probe import cv2_quiet, open_capture

    cv2 = cv2_quiet()  # quiet FFmpeg logging, as `prepare check`
    cap = open_capture(path)
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


# decord's messages start with a log prefix naming its C++ source: "[16:22:34] /github/workspace/src/video/
# video_reader.cc:699: Error getting frame ...". Neither the time nor a build path means anything to a user.
_LOG_PREFIX = re.compile(r"\[\d{1,2}:\d{2}:\d{2}\]\s*|\S+\.(?:cc|cpp|cxx|c|h|hpp):\d+:?\s*")


def _is_decord_log(line: str) -> bool:
    """decord's own log lines ("[16:22:34] /github/workspace/src/video/video_reader.cc:83: ERROR opening: ...")."""
    return re.match(r"\[\d{1,2}:\d{2}:\d{2}\]\s*\S+\.(?:cc|cpp|h):\d+", line) is not None


def _short(exc: BaseException) -> str:
    """A one-line, bounded summary of a decoder exception in our words (decord messages carry C++ stack
    noise and source paths)."""
    msg = _LOG_PREFIX.sub("", first_line(exc, 10_000)).strip()
    if "Error reading" in msg:
        return "unreadable or unsupported container"
    for key in ("Error sending packet", "Check failed", "av_read_frame", "seek", "Error getting frame"):
        if key in msg:
            return "decoder error: " + key
    return msg[:120] or type(exc).__name__

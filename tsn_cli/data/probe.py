"""Checking that a video decodes: OpenCV captures opened quietly within a time budget, the container's frame count,
and the "truncated" verdict shared by `prepare check`, frame extraction, eval and predict.

"Truncated" means fewer frames decode than the container's packets give (`tsn_cli.data.access.Scan.expected`: its
own frame table less the pre-roll an edit list hides, or the packets found when it has no table, as WebM/MKV) --
never OpenCV's duration x frame-rate estimate, wrong for variable frame rates. A shortfall of up to
`TRUNCATION_TOLERANCE` frames (or 1 %) is accepted because some encoders' edit lists make the count a frame or two
higher than what any decoder returns. Each file has one time budget (`tsn_cli.data.budget`) for the packet scan and
opening; in the full decode no single read may exceed it.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

TRUNCATION_TOLERANCE = 1


@dataclass
class VideoResult:
    """Outcome for one video. status: "extracted", "existing" (complete folder found), "ok" (checked) or "bad"."""

    src: str
    key: str
    status: str
    frames: int = 0
    claimed: int | None = None
    reason: str | None = None
    dst: str | None = None
    seconds: float = 0.0
    previous: dict | None = None  # the settings of a folder extracted again because they differed from the run's

    @property
    def ok(self) -> bool:
        """True unless the video was found bad."""
        return self.status != "bad"

    def to_dict(self) -> dict:
        """Plain dict for JSON output."""
        return asdict(self)



def cv2_quiet():
    """Import cv2 quietly: no 'can't open by name' warnings and no FFmpeg chatter ("moov atom not found")
    for bad files -- those are reported in our table instead. A user's OPENCV_FFMPEG_LOGLEVEL wins."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when the first capture opens
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - very old OpenCV
        pass
    return cv2


def open_capture(path: str, budget=None):
    """A VideoCapture with one FFmpeg thread (the process pool provides the parallelism). With a `Budget`, FFmpeg's
    interrupt callback ends the open after the time left and any single read after ``budget.seconds``."""
    from tsn_cli.fsutil import c_path

    cv2 = cv2_quiet()
    params = [cv2.CAP_PROP_N_THREADS, 1]
    if budget is not None:
        open_ms, read_ms = max(1, int(budget.remaining() * 1000)), max(1, int(budget.seconds * 1000))
        params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_ms]
    with c_path(path) as name:  # FFmpeg opens the file itself, so the name may be released afterwards
        try:
            return cv2.VideoCapture(name, cv2.CAP_FFMPEG, params)
        except (TypeError, cv2.error):  # pragma: no cover - OpenCV without the params overload
            return cv2.VideoCapture(name)


class TimedReads:
    """Times each read of a full decode: a read that ends after the budget's ``seconds`` was stopped by the
    interrupt callback (OpenCV then reports a plain end of stream), which is a timeout, not the end."""

    def __init__(self, path: str, budget):
        self.path, self.budget = path, budget

    def __call__(self, read):
        t0 = time.monotonic()
        got = read()
        if not (got[0] if isinstance(got, tuple) else got) and time.monotonic() - t0 >= self.budget.seconds * 0.99:
            raise self.budget.error(self.path)
        return got


def precheck(path: str) -> str | None:
    """Cheap file checks before decoding: the reason the file is unusable, or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot stat: {exc.strerror or exc}"
    if not os.path.isfile(path):
        return "not a file"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None


def container_scan(path: str, budget):
    """The container scan (`tsn_cli.data.access.scan_video`) within ``budget``: how many frames the decoder should
    reach. Raises VideoTimeout."""
    from tsn_cli.data.access import scan_video

    try:
        return scan_video(path, budget)
    except ImportError:  # pragma: no cover - PyAV is a dependency; without it no count is known
        return None


def truncation_reason(decoded: int, claimed: int | None) -> str | None:
    """The 'truncated' reason if `decoded` falls short of `claimed` by more than the tolerance, else None."""
    if decoded == 0:
        return "no decodable frames (not a video, unsupported codec or corrupt)"
    if claimed is not None:
        allowed = max(TRUNCATION_TOLERANCE, claimed // 100)
        if decoded < claimed - allowed:
            return f"truncated: {decoded} of {claimed} frames decodable"
    return None


def check_video(
    path: str, full: bool = True, key: str = "", budget=None, scan=None, raise_timeout: bool = False
) -> VideoResult:
    """Check one video: exists, non-empty, opens, and (full) every frame decodes, with no truncation.

    Truncation is judged by decoder reach: the frames decoded against the frames the container's packets give
    (`Scan.expected`: its own frame table less hidden pre-roll), never a duration x frame-rate estimate. Opening
    and the packet scan share the file's time budget (``budget``, a new `Budget` if None); in the full decode no
    single read may exceed it. ``scan``: a `Scan` already read for this file. ``raise_timeout``: raise VideoTimeout
    instead of returning it as the reason."""
    from tsn_cli.data.budget import Budget, VideoTimeout

    t0 = time.perf_counter()
    res = VideoResult(src=path, key=key or path, status="ok")
    reason = precheck(path)
    if reason is None:
        budget = budget or Budget()
        try:
            reason = _decode_check(path, res, full, budget, scan)
        except VideoTimeout as exc:
            if raise_timeout:
                raise
            reason = exc.reason
    if reason:
        res.status, res.reason = "bad", reason
    res.seconds = time.perf_counter() - t0
    return res


def _decode_check(path: str, res: VideoResult, full: bool, budget, scan) -> str | None:
    scan = scan if scan is not None else container_scan(path, budget)
    cap = open_capture(path, budget)
    try:
        if not cap.isOpened():
            budget.check(path)
            return "cannot open: not a video or unsupported format"
        res.claimed = scan.expected if scan is not None else None
        read = TimedReads(path, budget)
        if full:
            n = 0
            while read(cap.grab):  # grab() decodes without converting to BGR: enough to prove decodability
                n += 1
        else:
            n = 1 if read(cap.grab) else 0
            budget.check(path)  # quick checks (and eval/predict's vetting) are within the budget as a whole
        res.frames = n
        return truncation_reason(n, res.claimed if full else None)
    finally:
        cap.release()

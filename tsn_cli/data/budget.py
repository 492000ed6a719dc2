"""The per-file time budget for opening and decoding a video.

A crafted or damaged file can make FFmpeg read for minutes without failing (a real AVI padded with gigabytes of
zeros: the demuxer scans every byte for the next chunk). Every video read -- `prepare check`, frame extraction,
eval, predict, training -- starts one `Budget` per file; the PyAV and OpenCV readers pass its remaining time to
FFmpeg's interrupt callback (it fires on local files too, at each read) and check it between packets, so a file
that takes longer becomes one bad item "took longer than N s to open/decode" instead of a hang.

The budget is ``--video-timeout`` (check, eval, predict), carried to worker processes in the environment
variable ``TSN_VIDEO_TIMEOUT``; default `DEFAULT_VIDEO_TIMEOUT`.
"""

from __future__ import annotations

import math
import os
import time

from tsn_cli.errors import ConfigError, DecodeError

VIDEO_TIMEOUT_ENV = "TSN_VIDEO_TIMEOUT"
# A 10-minute 1080p clip opens and decodes in a few seconds here; a minute leaves room for slow disks and a
# loaded machine while bounding a crafted file.
DEFAULT_VIDEO_TIMEOUT = 60.0


class VideoTimeout(DecodeError):
    """Opening or decoding a video took longer than its budget (never retried with another decoder)."""


def video_timeout() -> float:
    """The per-file budget in seconds: ``TSN_VIDEO_TIMEOUT`` if set, else `DEFAULT_VIDEO_TIMEOUT`."""
    raw = os.environ.get(VIDEO_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_VIDEO_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{VIDEO_TIMEOUT_ENV}={raw[:40]!r}: expected seconds > 0 (e.g. 60)")
    return value


def set_video_timeout(seconds: float | None) -> None:
    """Set the budget for this process and the workers it starts (None keeps the current one, checked now so that
    a bad ``TSN_VIDEO_TIMEOUT`` is one error before any work, not one per video)."""
    if seconds is None:
        video_timeout()
    else:
        if not (math.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"--video-timeout {seconds}: expected seconds > 0")
        os.environ[VIDEO_TIMEOUT_ENV] = repr(float(seconds))


class Budget:
    """The time left for one file; started when the file is first opened."""

    def __init__(self, seconds: float | None = None):
        self.seconds = video_timeout() if seconds is None else float(seconds)
        self.deadline = time.monotonic() + self.seconds

    def remaining(self) -> float:
        """Seconds left (0 when spent)."""
        return max(0.0, self.deadline - time.monotonic())

    def spent(self) -> bool:
        """Whether the budget is used up."""
        return time.monotonic() >= self.deadline

    def error(self, path: str) -> VideoTimeout:
        """The one-line per-item reason for `path`."""
        return VideoTimeout(path, f"took longer than {self.seconds:g} s to open/decode (limit: --video-timeout)")

    def check(self, path: str) -> None:
        """Raise `VideoTimeout` when the budget is spent."""
        if self.spent():
            raise self.error(path)

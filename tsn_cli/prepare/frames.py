"""Video checking and frame extraction: decode each video once, in parallel processes, resumably.

Output per video is a folder of 1-based JPEGs, `img_00001.jpg`, `img_00002.jpg`, ... (PaddleVideo's naming).
A folder is written under a temporary name (`.<name>.tmp-<pid>`) and renamed when the whole video has been
decoded and written, so a folder with the final name is complete by construction; a later run skips it and
deletes any temporary folders left behind by a killed run. The frame count reported is what is on disk.

Bad videos never raise: `check_video` / `extract_video` return a `VideoResult` with status "bad" and a reason
(missing, empty, not a video, no decodable frames, truncated). "Truncated" means fewer frames decode than the
container claims; a shortfall of up to `TRUNCATION_TOLERANCE` frames (or 1 %) is accepted because some
encoders' edit lists make the claimed count a frame or two higher than what any decoder returns.

Decoder: OpenCV's `VideoCapture` (FFmpeg) with one decoding thread per process. For a sequential full decode
it measured as fast as or faster than decord on this machine (bikes.mp4 640x272: 1.97k vs 1.82k frames/s,
320x240 MJPG: 4.8k vs 3.6k), and it returns BGR, which `cv2.imwrite` needs, so no colour conversion.
Parallelism is over processes (one video per task): it scales with cores without relying on the codecs
releasing the GIL, and one broken video can only ever affect its own task.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tsn_cli.errors import TsnError

FRAME_TEMPLATE = "img_{:05d}.jpg"
_FRAME_RE = re.compile(r"^img_(\d{5,})\.jpg$")
TMP_MARK = ".tmp-"
TRUNCATION_TOLERANCE = 1
DEFAULT_JPEG_QUALITY = 95  # cv2.imwrite's default, i.e. what PaddleVideo's extractor writes


@dataclass
class VideoJob:
    """One video to check (`dst` None) or to extract into the frame folder `dst`."""

    src: str
    dst: str | None = None
    key: str = ""  # how the entry is named in reports (e.g. the list path); defaults to src
    kind: str = "video"  # "video", or "frames" to check an existing frame folder (src) against `expect`
    expect: int | None = None  # frame count a frames list claims


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

    @property
    def ok(self) -> bool:
        """True unless the video was found bad."""
        return self.status != "bad"

    def to_dict(self) -> dict:
        """Plain dict for JSON output."""
        return asdict(self)


@dataclass
class ExtractOptions:
    """How frames are written: optional short-side resize (PaddleVideo rounding) and JPEG quality."""

    short_side: int | None = None
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    full_check: bool = True  # for check jobs: decode every frame (detects truncation) vs open + first frame


@dataclass
class RunStats:
    """Totals of a parallel run, for progress columns and reports."""

    videos: int = 0
    done: int = 0
    bad: int = 0
    frames: int = 0
    seconds: float = 0.0
    results: list[VideoResult] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Frames decoded (or found on disk) per wall-clock second."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


# ----------------------------------------------------------------------------------------------- paths


def safe_join(base: str | os.PathLike, rel: str) -> Path:
    """Join an untrusted relative path (from a list or CSV) onto `base`, refusing anything that escapes it.

    Raises ValueError for absolute paths, drive letters, `..` components that leave `base`, NUL bytes and
    empty names. The check is lexical and then repeated on resolved paths, so a symlink inside `base` that
    points outside is refused too when the target exists.
    """
    if not rel or "\x00" in rel:
        raise ValueError("empty path or NUL byte")
    norm = rel.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise ValueError("absolute path")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise ValueError("path leaves the dataset folder ('..')")
    base_p = Path(base)
    out = base_p.joinpath(*parts)
    base_r = base_p.resolve()
    out_r = out.resolve()
    if out_r != base_r and base_r not in out_r.parents:
        raise ValueError("path leaves the dataset folder (symlink)")
    return out


# --------------------------------------------------------------------------------------------- decoding


def _cv2():
    """Import cv2 quietly: no 'can't open by name' warnings and no FFmpeg chatter ("moov atom not found")
    for bad files -- those are reported in our table instead. A user's OPENCV_FFMPEG_LOGLEVEL wins."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when the first capture opens
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - very old OpenCV
        pass
    return cv2


def _open(path: str):
    """A VideoCapture with one FFmpeg thread (the process pool provides the parallelism)."""
    cv2 = _cv2()
    try:
        return cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    except (TypeError, cv2.error):  # pragma: no cover - OpenCV without the params overload
        return cv2.VideoCapture(path)


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


def _claimed(cap) -> int | None:
    cv2 = _cv2()
    n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(n) if n and n > 0 else None


def truncation_reason(decoded: int, claimed: int | None) -> str | None:
    """The 'truncated' reason if `decoded` falls short of `claimed` by more than the tolerance, else None."""
    if decoded == 0:
        return "no decodable frames (not a video, unsupported codec or corrupt)"
    if claimed is not None:
        allowed = max(TRUNCATION_TOLERANCE, claimed // 100)
        if decoded < claimed - allowed:
            return f"truncated: {decoded} of {claimed} frames decodable"
    return None


def scaled_size(w: int, h: int, short_side: int | None) -> tuple[int, int]:
    """Output (w, h) for a short-side resize with PaddleVideo's rounding; unchanged if short_side is None/equal."""
    if not short_side or min(w, h) == short_side:
        return w, h
    if w <= h:
        return short_side, int(h * short_side / w + 0.5)
    return int(w * short_side / h + 0.5), short_side


def check_video(path: str, full: bool = True, key: str = "") -> VideoResult:
    """Check one video: exists, non-empty, opens, and (full) every frame decodes, with no truncation."""
    t0 = time.perf_counter()
    res = VideoResult(src=path, key=key or path, status="ok")
    reason = precheck(path)
    if reason is None:
        cap = _open(path)
        try:
            if not cap.isOpened():
                reason = "cannot open: not a video or unsupported format"
            else:
                res.claimed = _claimed(cap)
                n = 0
                if full:
                    while cap.grab():  # grab() decodes without converting to BGR: enough to prove decodability
                        n += 1
                else:
                    n = 1 if cap.grab() else 0
                res.frames = n
                reason = truncation_reason(n, res.claimed if full else None)
        finally:
            cap.release()
    if reason:
        res.status, res.reason = "bad", reason
    res.seconds = time.perf_counter() - t0
    return res


def _first_gap(folder: str | os.PathLike) -> str:
    """'img_00004.jpg missing' for the first missing frame number (for error messages)."""
    try:
        idx = {int(m.group(1)) for m in map(_FRAME_RE.match, os.listdir(folder)) if m}
    except OSError:
        return "cannot list folder"
    missing = next((i for i in range(1, max(idx, default=0) + 2) if i not in idx), None)
    return f"gap: img_{missing:05d}.jpg missing" if missing is not None else "gap"


def count_frames_on_disk(folder: str | os.PathLike) -> int | None:
    """Number of frames img_00001.jpg..img_N.jpg in `folder`, or None if they are not exactly 1..N (or N = 0)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    idx = set()
    for name in names:
        m = _FRAME_RE.match(name)
        if m:
            idx.add(int(m.group(1)))
    n = len(idx)
    if n == 0 or min(idx) != 1 or max(idx) != n:
        return None
    return n


def _tmp_name(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}{TMP_MARK}{os.getpid()}")


def remove_stale_tmp(dst: Path) -> int:
    """Delete temporary folders a killed run left next to `dst` (same name, any pid). Returns how many."""
    n = 0
    parent = dst.parent
    prefix = f".{dst.name}{TMP_MARK}"
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return 0
    for e in entries:
        if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path, ignore_errors=True)
            n += 1
    return n


def extract_video(job: VideoJob, opts: ExtractOptions | None = None) -> VideoResult:
    """Decode `job.src` once and write every frame to `job.dst` (skipped if a complete folder is there).

    Never raises for a bad video (returns status "bad" and removes the partial output); raises OSError only
    for output problems (disk full, permission), which the caller turns into a real failure.
    """
    opts = opts or ExtractOptions()
    cv2 = _cv2()
    t0 = time.perf_counter()
    assert job.dst is not None
    dst = Path(job.dst)
    res = VideoResult(src=job.src, key=job.key or job.src, status="extracted", dst=str(dst))
    if dst.is_dir():
        n = count_frames_on_disk(dst)
        if n is not None:
            res.status, res.frames = "existing", n
            res.seconds = time.perf_counter() - t0
            return res
        # Not 1..N (someone deleted frames): never trust it; redo it.
        shutil.rmtree(dst)
    reason = precheck(job.src)
    if reason:
        res.status, res.reason = "bad", reason
        res.seconds = time.perf_counter() - t0
        return res
    remove_stale_tmp(dst)
    tmp = _tmp_name(dst)
    tmp.mkdir(parents=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(opts.jpeg_quality)]
    cap = _open(job.src)
    n = 0
    try:
        if not cap.isOpened():
            reason = "cannot open: not a video or unsupported format"
        else:
            res.claimed = _claimed(cap)
            size = None
            tmp_s = str(tmp)
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                if opts.short_side:
                    if size is None:
                        h, w = frame.shape[:2]
                        size = scaled_size(w, h, opts.short_side)
                        interp = cv2.INTER_AREA if size[0] < w else cv2.INTER_LINEAR
                    if size != (frame.shape[1], frame.shape[0]):
                        frame = cv2.resize(frame, size, interpolation=interp)
                n += 1
                # imencode + write (not imwrite) so that a full disk raises OSError instead of returning False.
                ok_enc, buf = cv2.imencode(".jpg", frame, params)
                if not ok_enc:
                    raise OSError(f"JPEG encoding failed for frame {n}")
                with open(os.path.join(tmp_s, FRAME_TEMPLATE.format(n)), "wb") as fh:
                    fh.write(buf)
            reason = truncation_reason(n, res.claimed)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        cap.release()
    if reason:
        shutil.rmtree(tmp, ignore_errors=True)
        res.status, res.reason, res.frames = "bad", reason, n
    else:
        try:
            os.rename(tmp, dst)
        except OSError:
            # Another run finished the same folder first: keep theirs if complete.
            shutil.rmtree(tmp, ignore_errors=True)
            if count_frames_on_disk(dst) is None:
                raise
        res.frames = count_frames_on_disk(dst) or 0
    res.seconds = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------------------------------- parallel run


def _worker_init() -> None:
    """Per-process setup: OpenCV single-threaded (we parallelise over processes), quiet logging.

    Ctrl-C reaches the whole process group; only the parent handles it (it cancels the pool). A worker
    finishes its video (written under a temporary name, so it is never half-visible) and exits quietly
    instead of printing a KeyboardInterrupt traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2 = _cv2()
    cv2.setNumThreads(1)


def check_frame_dir(folder: str, expect: int | None, full: bool = True, key: str = "") -> VideoResult:
    """Check a frame folder from a frames list: exists, frames are exactly img_00001..img_N, N matches the
    list, every JPEG is non-empty and ends with the JPEG end marker (full), and first/middle/last decode."""
    cv2 = _cv2()
    t0 = time.perf_counter()
    res = VideoResult(src=folder, key=key or folder, status="ok", claimed=expect)
    reason = None
    if not os.path.exists(folder):
        reason = "missing"
    elif not os.path.isdir(folder):
        reason = "not a folder"
    else:
        n = count_frames_on_disk(folder)
        if n is None:
            has_any = any(_FRAME_RE.match(x) for x in os.listdir(folder))
            reason = f"frames are not numbered img_00001..img_N ({_first_gap(folder)})" if has_any else "no frames (img_00001.jpg ...)"
        else:
            res.frames = n
            if expect is not None and n != expect:
                reason = f"list says {expect} frames, {n} on disk"
            else:
                to_decode = sorted({1, (n + 1) // 2, n})
                if full:
                    for i in range(1, n + 1):
                        p = os.path.join(folder, FRAME_TEMPLATE.format(i))
                        try:
                            with open(p, "rb") as fh:
                                fh.seek(-2, os.SEEK_END)
                                tail = fh.read(2)
                        except OSError:
                            tail = b""
                        if tail != b"\xff\xd9":
                            reason = f"{FRAME_TEMPLATE.format(i)} is empty or truncated"
                            break
                if reason is None:
                    for i in to_decode:
                        if cv2.imread(os.path.join(folder, FRAME_TEMPLATE.format(i)), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
                            reason = f"{FRAME_TEMPLATE.format(i)} cannot be decoded"
                            break
    if reason:
        res.status, res.reason = "bad", reason
    res.seconds = time.perf_counter() - t0
    return res


def _run_one(job: VideoJob, opts: ExtractOptions) -> VideoResult:
    if job.kind == "frames":
        return check_frame_dir(job.src, job.expect, full=opts.full_check, key=job.key)
    if job.dst is None:
        return check_video(job.src, full=opts.full_check, key=job.key)
    return extract_video(job, opts)


def default_workers() -> int:
    """All usable cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def run_jobs(
    jobs: Sequence[VideoJob],
    opts: ExtractOptions | None = None,
    workers: int | None = None,
    on_result: Callable[[VideoResult, RunStats], None] | None = None,
) -> RunStats:
    """Check or extract every job, in `workers` processes (1: in this process), in input order of results.

    `on_result(result, stats)` runs in this process after each video (for progress bars). Output errors
    (disk full, permission denied) and dead workers raise TsnError; a Ctrl-C stops the workers and re-raises
    KeyboardInterrupt, leaving only temporary folders that the next run removes.
    """
    opts = opts or ExtractOptions()
    workers = workers or default_workers()
    stats = RunStats(videos=len(jobs))
    results: list[VideoResult | None] = [None] * len(jobs)
    t0 = time.perf_counter()

    def record(i: int, res: VideoResult) -> None:
        results[i] = res
        stats.done += 1
        stats.frames += res.frames if res.ok else 0
        stats.bad += 0 if res.ok else 1
        stats.seconds = time.perf_counter() - t0
        if on_result is not None:
            on_result(res, stats)

    try:
        if workers <= 1 or len(jobs) <= 1:
            cv2 = _cv2()
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                for i, job in enumerate(jobs):
                    record(i, _run_one(job, opts))
            finally:
                cv2.setNumThreads(threads)  # leave the caller's OpenCV as it was
        else:
            _run_pool(jobs, opts, min(workers, len(jobs)), record)
    except OSError as exc:
        raise TsnError(f"cannot write frames: {exc.strerror or exc} ({getattr(exc, 'filename', '') or ''})") from exc
    stats.seconds = time.perf_counter() - t0
    stats.results = [r for r in results if r is not None]
    return stats


def _run_pool(jobs: Sequence[VideoJob], opts: ExtractOptions, workers: int, record) -> None:
    import multiprocessing as mp

    # The platform's default start method (fork on Linux before Python 3.14, spawn on macOS/Windows). Fork
    # starts workers instantly and, unlike spawn, also works when __main__ is a notebook or `python -`;
    # the workers only touch OpenCV and the file system, never locks held by the caller's threads.
    ctx = mp.get_context()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init)
    pending: dict = {}
    it: Iterable[tuple[int, VideoJob]] = iter(enumerate(jobs))
    window = workers * 4  # bounded in-flight queue: a 250k-video run does not create 250k futures at once
    try:
        for i, job in it:
            pending[pool.submit(_run_one, job, opts)] = i
            if len(pending) >= window:
                break
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = pending.pop(fut)
                record(i, fut.result())
            for i, job in it:
                pending[pool.submit(_run_one, job, opts)] = i
                if len(pending) >= window:
                    break
    except BrokenProcessPool as exc:
        pool.shutdown(wait=False, cancel_futures=True)
        raise TsnError("a worker process died (out of memory or killed); run the same command again to resume") from exc
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)

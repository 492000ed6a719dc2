"""Video checking and frame extraction: decode each video once, in parallel processes, resumably.

Output per video is a folder of 1-based JPEGs, `img_00001.jpg`, `img_00002.jpg`, ... (PaddleVideo's naming).
A folder is written under a unique temporary name (`.<name>.tmp-<pid>-<random>`) and renamed when the whole video
has been decoded and written, so a folder with the final name is complete by construction; a later run skips it and
deletes temporary folders left behind by a killed run (never those of a run still going). The frame count reported
is what is on disk. Each folder's settings are recorded beside it (`.<name>.tsn-frames.json`; inside, it would
be counted as a frame by tools that count files): a later run with other settings, sharded or not, extracts the
folder again and replaces it whole instead of calling it "existing".

Bad videos never raise: `check_video` / `extract_video` return a `VideoResult` with status "bad" and a reason
(missing, empty, not a video, no decodable frames, truncated, took longer than the time budget); what counts as
truncated, and the per-file time budget, are `tsn_cli.data.probe`'s, shared with eval and predict.

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
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tsn_cli.constants import FRAME_TEMPLATE
from tsn_cli.data.probe import (
    TimedReads,
    VideoResult,
    check_video,
    container_scan,
    cv2_quiet,
    open_capture,
    precheck,
    truncation_reason,
)
from tsn_cli.errors import TsnError
from tsn_cli.runtime import exit_with_parent, stop_pool

_FRAME_RE = re.compile(r"^img_(\d{5,})\.jpg$")
TMP_MARK = ".tmp-"
SETTINGS_FILE = ".tsn-frames.json"  # how frames were written: the frame root's record, and (`.<folder>` + this)
# each frame folder's, beside it
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
class ExtractOptions:
    """How frames are written: optional short-side resize (PaddleVideo rounding) and JPEG quality."""

    short_side: int | None = None
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    full_check: bool = True  # for check jobs: decode every frame (detects truncation) vs open + first frame
    # settings of folders that record none (written before folders had a record): the frame root's record, if any
    legacy: dict | None = None

    def settings(self) -> dict:
        """What a frame folder records: {"short_side": ..., "jpeg_quality": ...}."""
        return {"short_side": self.short_side, "jpeg_quality": self.jpeg_quality}


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


def scaled_size(w: int, h: int, short_side: int | None) -> tuple[int, int]:
    """Output (w, h) for a short-side resize with PaddleVideo's rounding; unchanged if short_side is None/equal."""
    if not short_side or min(w, h) == short_side:
        return w, h
    if w <= h:
        return short_side, int(h * short_side / w + 0.5)
    return int(w * short_side / h + 0.5), short_side


def _first_gap(folder: str | os.PathLike) -> str:
    """'img_00004.jpg missing' for the first missing frame number (for error messages)."""
    try:
        idx = {int(m.group(1)) for m in map(_FRAME_RE.match, os.listdir(folder)) if m}
    except OSError:
        return "cannot list folder"
    missing = next((i for i in range(1, max(idx, default=0) + 2) if i not in idx), None)
    return f"gap: {FRAME_TEMPLATE.format(missing)} missing" if missing is not None else "gap"


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


def _make_tmp(dst: Path) -> Path:
    """A new, unique temporary folder next to `dst` named `.<name>.tmp-<pid>-<random>`: two runs (or two workers)
    extracting the same video never write into one folder."""
    from tsn_cli.fsutil import current_umask

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}{TMP_MARK}{os.getpid()}-", dir=dst.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; the folder keeps its mode when renamed
    return tmp


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` is running (a zombie, e.g. a killed worker nobody reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's live process (or a number we cannot check): leave its folder alone
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def remove_stale_tmp(dst: Path) -> int:
    """Delete temporary folders that killed runs left next to `dst`; a folder whose writer (the pid in its name) is
    still running is another run's work in progress and is left alone. Returns how many were deleted."""
    n = 0
    parent = dst.parent
    prefix = f".{dst.name}{TMP_MARK}"
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return 0
    for e in entries:
        if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False):
            pid = e.name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
                continue
            shutil.rmtree(e.path, ignore_errors=True)
            n += 1
    return n


def record_path(folder: str | os.PathLike) -> Path:
    """Where a frame folder's settings are recorded: `.<name>.tsn-frames.json` beside it."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}{SETTINGS_FILE}"


def read_settings(path: str | os.PathLike) -> dict | None:
    """The settings recorded in `path`; None when there is no record, {} when it is unreadable (a damaged or
    foreign file: matches no settings, so its folder is extracted again)."""
    import json

    from tsn_cli.fsutil import KIB, read_regular_file

    if not os.path.lexists(path):
        return None
    try:  # a record is tiny; a FIFO or device in its place is refused, never read
        data = json.loads(read_regular_file(path, 4 * KIB, "settings record"))
    except (TsnError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_settings(folder: Path, settings: dict) -> None:
    import json

    from tsn_cli.fsutil import atomic_write_text

    atomic_write_text(record_path(folder), json.dumps(settings) + "\n")


def settings_change(before: dict, after: dict) -> str:
    """ "short_side None -> 32, jpeg_quality 95 -> 50": the settings that differ (for a warning)."""
    changed = [f"{k} {before.get(k, '?')} -> {v}" for k, v in after.items() if before.get(k, "?") != v]
    return ", ".join(changed) or "an unreadable settings record"


def extract_video(job: VideoJob, opts: ExtractOptions | None = None) -> VideoResult:
    """Decode `job.src` once and write every frame to `job.dst` (skipped if a complete folder is there).

    Never raises for a bad video (returns status "bad" and removes the partial output); raises OSError only
    for output problems (disk full, permission), which the caller turns into a real failure.
    """
    opts = opts or ExtractOptions()
    cv2 = cv2_quiet()
    t0 = time.perf_counter()
    assert job.dst is not None
    dst = Path(job.dst)
    res = VideoResult(src=job.src, key=job.key or job.src, status="extracted", dst=str(dst))
    wanted = opts.settings()
    redo = False
    if dst.is_dir():
        n = count_frames_on_disk(dst)
        if n is not None:
            recorded = read_settings(record_path(dst))
            recorded = opts.legacy if recorded is None else recorded
            if recorded is None or recorded == wanted:  # no record anywhere: a folder from another tool, kept
                res.status, res.frames = "existing", n
                res.seconds = time.perf_counter() - t0
                return res
            res.previous, redo = recorded, True  # written with other settings: extract again, replace it whole
        else:  # Not 1..N (someone deleted frames): never trust it; redo it.
            shutil.rmtree(dst)
    reason = precheck(job.src)
    if reason:
        res.status, res.reason = "bad", reason
        res.seconds = time.perf_counter() - t0
        return res
    from tsn_cli.data.budget import Budget, VideoTimeout

    budget = Budget()
    try:
        scan = container_scan(job.src, budget)
    except VideoTimeout as exc:
        res.status, res.reason = "bad", exc.reason
        res.seconds = time.perf_counter() - t0
        return res
    remove_stale_tmp(dst)
    tmp = _make_tmp(dst)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(opts.jpeg_quality)]
    cap = open_capture(job.src, budget)
    read = TimedReads(job.src, budget)
    n = 0
    try:
        if not cap.isOpened():
            reason = (
                budget.error(job.src).reason if budget.spent() else "cannot open: not a video or unsupported format"
            )
        else:
            res.claimed = scan.expected if scan is not None else None
            size = None
            tmp_s = str(tmp)
            while True:
                ok, frame = read(cap.read)
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
    except VideoTimeout as exc:
        reason = exc.reason
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
            # The record is written so that a kill in between never leaves old frames under a record of new
            # settings: a new folder's record first (no folder yet: the next run extracts it anyway), a replaced
            # folder's after the rename (until then its old record says "other settings": extracted again).
            if redo and dst.is_dir():  # replace the folder written with other settings as a whole
                old = Path(tempfile.mkdtemp(prefix=f".{dst.name}{TMP_MARK}{os.getpid()}-old", dir=dst.parent))
                os.rename(dst, old / dst.name)
                os.rename(tmp, dst)
                _write_settings(dst, wanted)
                shutil.rmtree(old, ignore_errors=True)
            else:
                _write_settings(dst, wanted)
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
    exit_with_parent()  # a killed `tsn prepare` leaves no worker behind
    cv2 = cv2_quiet()
    cv2.setNumThreads(1)


def check_frame_dir(folder: str, expect: int | None, full: bool = True, key: str = "") -> VideoResult:
    """Check a frame folder from a frames list: exists, frames are exactly img_00001..img_N, N matches the
    list, every JPEG is non-empty and ends with the JPEG end marker (full), and first/middle/last decode."""
    cv2 = cv2_quiet()
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
            reason = (
                f"frames are not numbered img_00001..img_N ({_first_gap(folder)})"
                if has_any
                else "no frames (img_00001.jpg ...)"
            )
        else:
            res.frames = n
            if expect is not None and n != expect:
                reason = f"list says {expect} frames, {n} on disk"
            else:
                reason = _check_frames(cv2, folder, range(1, n + 1) if full else sorted({1, (n + 1) // 2, n}))
    if reason:
        res.status, res.reason = "bad", reason
    res.seconds = time.perf_counter() - t0
    return res


def _check_frames(cv2, folder: str, numbers) -> str | None:
    """The first problem of frames `numbers` (1-based) as eval would meet it (the same reader: regular files
    within a size cap, JPEG end marker by content, so a PNG named .jpg passes as eval reads it), else None."""
    import numpy as np

    from tsn_cli.data.video import read_frame_bytes
    from tsn_cli.errors import DecodeError

    for i in numbers:
        try:
            data = read_frame_bytes(os.path.join(folder, FRAME_TEMPLATE.format(i)), folder)
        except DecodeError as exc:
            return exc.reason
        if cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
            return f"{FRAME_TEMPLATE.format(i)} cannot be decoded"
    return None


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
            cv2 = cv2_quiet()
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


def pool_context():
    """The start method for extraction workers.

    The platform's default (fork on Linux before Python 3.14, spawn on macOS/Windows) when this process runs
    no threads but Python's own (`tsn prepare`: the progress bar's): fork starts workers instantly and, unlike
    spawn, also works when
    __main__ is a notebook or `python -`. A process that already runs native threads (Paddle's or OpenMP's
    after `import paddle`, decoder threads -- the Python API in a training script, a notebook) gets a fork
    server instead: a child forked from it can deadlock on a lock another thread held at the fork (seen as a
    worker stuck in OpenCV's initialisation).
    """
    import multiprocessing as mp
    import threading

    try:  # OS threads that Python did not start: OpenMP/Paddle/decoder pools, which may hold a lock at the fork
        native = len(os.listdir("/proc/self/task")) - threading.active_count()
    except OSError:  # no /proc: not Linux, where the default is spawn anyway
        native = 0
    if native > 0 and "forkserver" in mp.get_all_start_methods():
        return mp.get_context("forkserver")
    return mp.get_context()


def _run_pool(jobs: Sequence[VideoJob], opts: ExtractOptions, workers: int, record) -> None:
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=pool_context(), initializer=_worker_init)
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
        stop_pool(pool, kill=True)
        raise TsnError("a worker process died (out of memory or killed); run the same command again to resume") from exc
    except Exception:  # e.g. a full disk: the videos in flight finish or fail on their own (bounded: one per worker)
        stop_pool(pool, kill=False)
        raise
    except BaseException:  # Ctrl-C, SystemExit: nothing more is wanted from the workers
        stop_pool(pool, kill=True)
        raise
    pool.shutdown(wait=True)

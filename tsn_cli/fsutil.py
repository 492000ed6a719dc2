"""Crash-safe file writing: write to a temporary file in the same folder, fsync, then rename over the target.

A kill at any moment leaves either the old file or the new one, never a half-written one; a failed write
(disk full, permission denied) raises `TsnError` and leaves the old file untouched.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

from tsn_cli.errors import TsnError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask. Linux shows it in /proc (no side effect); elsewhere it can only be read by setting it,
    so set and restore it under a lock (our own callers never see the temporary value)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def plain_file_mode(target: Path) -> int:
    """The mode a plain `open(target, "w")` would leave: the existing file's mode, else 0o666 minus the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success fsync it and rename it to `target`.

    The caller writes the whole file to the yielded path (with any library). On an exception the temporary
    file is removed and the target is left as it was. The file gets the mode a plain `open()` would give it
    (mkstemp creates 0600 files; a checkpoint or list must be as readable as any other file the user writes).
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        try:
            os.fchmod(fd, plain_file_mode(target))
        except OSError:
            os.unlink(tmp_name)
            raise
        finally:
            os.close(fd)
    except OSError as exc:
        raise TsnError(f"cannot write {target}: {exc.strerror or exc}") from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(folder)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        hint = " (disk full)" if exc.errno == errno.ENOSPC else ""
        raise TsnError(f"cannot write {target}: {exc.strerror or exc}{hint}; the previous file is intact") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8, '\\n' line endings) to `target` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def append_line(target: str | os.PathLike, line: str) -> None:
    """Append one line and fsync, so a kill loses at most the line being written (used for metrics.jsonl)."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise TsnError(f"cannot write {target}: {exc.strerror or exc}") from exc


def ensure_dir(folder: str | os.PathLike) -> Path:
    """Create `folder` (and parents) if needed; a failure (read-only disk, a file in the way, permissions)
    raises a one-line TsnError naming the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TsnError(f"cannot create folder {folder}: {exc.strerror or exc}") from exc
    return folder


KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
# Size caps of the files tsn reads whole: far above any real file, far below what would exhaust memory.
MAX_CONFIG_BYTES = MIB  # a config / tsn.yaml (its class names: 1 MiB is ~30k names; YAML parses at ~1 MB/s)
MAX_LIST_BYTES = 512 * MIB  # a list, label or CSV file (K400's train CSV is ~10 MB)
MAX_WEIGHTS_BYTES = 16 * GIB  # a .pdparams/.pdopt/.safetensors (ResNet-152 TSN: ~240 MB)
MAX_FRAME_BYTES = 64 * MIB  # one frame image (a 4K JPEG is ~5 MB)


def _size(n: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"


def special_kind(path: str | os.PathLike) -> str | None:
    """'a folder' / 'a named pipe' / 'a device' / 'a socket' for an existing path that is not a regular file
    (symlinks followed); None for a regular file or a missing path."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else _kind(mode)


def read_regular_file(
    path: str | os.PathLike, max_bytes: int, what: str = "file", error: Callable = TsnError, shown: str | None = None
) -> bytes:
    """The bytes of `path` if it is a regular file of at most `max_bytes`; else raise `error` (one line naming
    the file and what is wrong: missing, a folder, a device such as /dev/zero, a named pipe, too big).

    The file is opened non-blocking (a FIFO never hangs the open) and the *opened* descriptor is checked, so
    swapping the path for a device after a check cannot slip through; reading stops at the cap even if the
    file grows meanwhile. `error` builds the exception from the message; `shown` names the file in it."""
    shown = shown or os.fsdecode(os.fspath(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{shown}: {what} not found") from None
    except OSError as exc:
        raise error(f"{shown}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{shown}: is a folder, expected a {what}")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{shown}: is {_kind(st.st_mode)}, not a regular file (a {what} must be one)")
        if st.st_size > max_bytes:
            raise error(f"{shown}: {what} is {_size(st.st_size)}, more than the {_size(max_bytes)} one can be")
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(max_bytes + 1 - total, 16 * MIB))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise error(f"{shown}: {what} is more than {_size(max_bytes)} (it grew while being read)")
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"{shown}: cannot read {what} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def c_path(path: str | os.PathLike) -> Iterator[str]:
    """A name of `path` that a C library (OpenCV, decord) can open: the path itself when it is valid UTF-8, else
    `/proc/self/fd/N` of the file opened here for the duration (a file name with bytes that are not UTF-8, such as
    a raw 0x9b, reaches Python as surrogates, which crash `cv2.VideoCapture` with a segmentation fault)."""
    name = os.fsdecode(os.fspath(path))
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield name
        return
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


LOCK_NAME = ".tsn.lock"  # the lock file inside a folder locked with `inside=True` (prepare's list and frame folders)


def _lock_holder(fd: int) -> tuple[str, str]:
    """(pid, what) recorded in a held lock file ("12345 tsn prepare"); ("?", "tsn run") when unreadable."""
    text = os.pread(fd, 200, 0).decode("ascii", "replace").strip()
    pid, _, what = text.partition(" ")
    return (pid if pid.isdigit() else "?"), (what or "tsn run")


@contextlib.contextmanager
def exclusive_lock(
    target: str | os.PathLike,
    *,
    what: str = "tsn run",
    wait: bool = False,
    on_wait: Callable[[str], None] | None = None,
    inside: bool = False,
) -> Iterator[None]:
    """Hold an exclusive lock on writing `target`, for the whole `with` block.

    The lock is a file flock'ed by this process and removed on release: `.<name>.lock` beside `target` (an export
    folder, replaced as a whole), or `.tsn.lock` inside it with `inside` (a folder whose files are rewritten in
    place: prepare's lists and frames). It records "<pid> <what>" (what: "tsn export", "tsn prepare"). A second run
    that would write the same output stops with "X is in use by pid N (another tsn prepare); wait for it or pass
    --wait" (TsnError, exit 2) instead of mixing its files with the first run's; with `wait` it calls `on_wait`
    with a line saying whom it waits for, then blocks until the lock is free. The lock goes with the process, so a
    killed run never leaves it held."""
    import fcntl

    target = Path(target)
    if inside:
        ensure_dir(target)
        lock_path = target / LOCK_NAME
    else:
        ensure_dir(target.parent if str(target.parent) else Path("."))
        lock_path = target.parent / f".{target.name}.lock"
    told = False
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise TsnError(f"cannot lock {target}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, holder = _lock_holder(fd)
            if not wait:
                os.close(fd)
                raise TsnError(
                    f"{target} is in use by pid {pid} (another {holder}); wait for it or pass --wait"
                ) from None
            if on_wait is not None and not told:
                on_wait(f"{target} is in use by pid {pid} (another {holder}): waiting for it to finish")
                told = True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C interrupts the wait (KeyboardInterrupt)
            except BaseException:
                os.close(fd)
                raise
        try:  # the holder before us may have removed the file between our open and our lock: lock the new one
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


def open_regular_text(
    path: str | os.PathLike,
    max_bytes: int,
    what: str = "file",
    error: Callable = TsnError,
    encoding: str = "utf-8-sig",
    errors: str = "strict",
) -> io.TextIOWrapper:
    """A text stream (newline='' as the csv module wants) over `read_regular_file`'s bytes: the same guards
    (regular file, size cap), decoded lazily as `open()` would."""
    raw = read_regular_file(path, max_bytes, what, error)
    return io.TextIOWrapper(io.BytesIO(raw), encoding=encoding, errors=errors, newline="")

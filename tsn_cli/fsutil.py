"""Crash-safe file writing: write to a temporary file in the same folder, fsync, then rename over the target.

A kill at any moment leaves either the old file or the new one, never a half-written one; a failed write
(disk full, permission denied) raises `TsnError` and leaves the old file untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

from tsn_cli.errors import TsnError


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
    file is removed and the target is left as it was.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
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

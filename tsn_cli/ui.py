"""Terminal output shared by every command: one rich console, progress bars, tables, JSON, and sanitising.

Names that come from files (class names, paths) go through `safe()` so that terminal escape sequences in a
label file or list can never reach the terminal raw.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import tempfile
import threading
from typing import Any, Callable, Iterable, Iterator, Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(stderr=False, highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False)

# C0 and C1 controls (ESC, and CSI as the single code point U+009B) and lone surrogates: undecodable bytes of
# a file name read with surrogateescape ('\udc9b' is a raw 0x9b byte, which a terminal takes as CSI).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _replace(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else "?"


def plain(text: Any) -> str:
    """Printable form of an untrusted string without rich escaping (for JSON and files): control characters
    (ESC, C1 such as 0x9b) become '?', undecodable bytes kept as surrogates are shown as '\\xNN'."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "surrogateescape")
    return _CONTROL.sub(_replace, str(text))


def safe(text: Any) -> str:
    """Printable form of an untrusted string for the console: `plain`, with rich markup escaped."""
    return escape(plain(text))


def make_progress(*extra_columns, transient: bool = False, disable: bool = False) -> Progress:
    """A progress bar with count, rate-friendly extra columns, elapsed time and ETA."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=disable,
    )


def fmt(value: Any) -> str:
    """A table cell for a value: floats to 4 decimals (tiny or huge ones in e-notation), None as '-', lists
    joined, bools as true/false -- never a raw repr such as 0.16666666666666666 or None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 1_000_000 else str(value)
    if isinstance(value, float):
        if value == 0 or not math.isfinite(value):
            return "0" if value == 0 else str(value)
        if 1e-3 <= abs(value) < 1e6:
            return f"{value:.4f}".rstrip("0").rstrip(".")
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) if value else "-"
    return str(value)


def shorten(text: str, width: int) -> str:
    """`text` cut to `width` cells with an ellipsis in the middle, keeping the end (a path's file name)."""
    if cell_len(text) <= width or width < 8:
        return text
    head = (width - 1) // 3
    tail = width - 1 - head
    return text[:head] + "\u2026" + text[len(text) - tail :]


def _word_width(text: str) -> int:
    return max((cell_len(w) for w in text.split()), default=0)


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Sequence[int] = (),
    paths: Sequence[int] = (),
) -> Table:
    """Build a rich table whose title and cells are sanitised with `safe` and formatted with `fmt`.

    Nothing breaks mid-word at the console width: the table is at least as wide as its title (a longer title is
    shortened in the middle), numbers never wrap, and the `paths` columns never wrap either -- a path too long
    for the space left by the other columns loses its middle (the --json output has it whole).
    """
    width = console.width
    cells = [[c if hasattr(c, "__rich_console__") else plain(fmt(c)) for c in row] for row in rows]
    if paths:
        overhead = 3 * len(columns) + 1  # borders and one space of padding either side of every cell
        others = 0
        for i, name in enumerate(columns):
            if i not in paths:
                texts = [name] + [c for row in cells for j, c in enumerate(row) if j == i and isinstance(c, str)]
                natural = max(cell_len(t) for t in texts)
                others += min(natural, max(24, max(_word_width(t) for t in texts)))
        budget = max(24, (width - overhead - others) // len(paths))
        cells = [
            [shorten(c, budget) if j in paths and isinstance(c, str) else c for j, c in enumerate(row)] for row in cells
        ]
    if title is not None:
        title = shorten(plain(title), width)
    t = Table(
        title=None if title is None else escape(title),
        title_justify="left",
        header_style="bold",
        min_width=min(width, cell_len(title)) if title else None,
    )
    for i, name in enumerate(columns):
        t.add_column(name, justify="right" if i in numeric else "left", no_wrap=i in numeric or i in paths)
    for row in cells:
        t.add_row(*[c if not isinstance(c, str) else escape(c) for c in row])
    return t


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (one strict-JSON document: a NaN or infinity is a TsnError naming
    where it is, never the `NaN` token strict parsers reject)."""
    try:
        text = json.dumps(obj, indent=2, default=_json_default, allow_nan=False)
    except ValueError:
        from tsn_cli.errors import TsnError

        raise TsnError(
            f"--json: the result holds a non-finite number at {_non_finite(obj) or '?'}, "
            "which JSON cannot represent (broken weights or a diverged run?)"
        ) from None
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _non_finite(obj: Any, where: str = "") -> str | None:
    """The path ('results[0].score') of the first NaN/inf float in a JSON-like object, or None."""
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "top level")
    if hasattr(obj, "tolist"):
        obj = obj.tolist()
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."))
        if found:
            return found
    return None


def _json_default(o: Any):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(o)


def info(msg: str) -> None:
    """A status line on stderr (keeps stdout clean for --json)."""
    err_console.print(msg)


def warn(msg: str) -> None:
    """A warning line on stderr."""
    err_console.print(f"[yellow]warning:[/] {msg}")


_CAPTURE_LOCK = threading.Lock()


@contextlib.contextmanager
def sanitised_native_stderr(drop: Callable[[str], bool] = lambda line: False) -> Iterator[None]:
    """Capture what native code (decord, FFmpeg) writes straight to file descriptor 2 while the block runs, then
    re-emit it through `plain` -- a file name with terminal escapes inside a decoder's "ERROR opening: NAME" line
    never reaches the terminal raw -- leaving out the lines `drop` says are noise. Our own console is held off
    meanwhile so none of its output is captured."""
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    # one capture at a time (two threads swapping descriptor 2 could leave it pointing at a deleted file); the
    # timeouts: in a forked worker a lock may be a copy held by a thread that no longer exists
    if not _CAPTURE_LOCK.acquire(timeout=5):
        yield
        return
    lock = getattr(err_console, "_lock", None)
    held = lock is not None and lock.acquire(timeout=0.5)
    try:
        with tempfile.TemporaryFile() as tmp:
            saved = os.dup(2)
            try:
                os.dup2(tmp.fileno(), 2)
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                captured = tmp.read(1 << 16).decode("utf-8", "surrogateescape")
                kept = [plain(ln) for ln in captured.splitlines() if ln.strip() and not drop(ln)]
                if kept:
                    sys.stderr.write("".join(ln + "\n" for ln in kept))
                    sys.stderr.flush()
    finally:
        if held:
            lock.release()
        _CAPTURE_LOCK.release()

"""Terminal output shared by every command: one rich console, progress bars, tables, JSON, and sanitising.

Names that come from files (class names, paths) go through `safe()` so that terminal escape sequences in a
label file or list can never reach the terminal raw.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Iterable, Sequence

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

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text: Any) -> str:
    """Printable form of an untrusted string: control characters (ESC included) become '?', rich markup is escaped."""
    return escape(_CONTROL.sub("?", str(text)))


def plain(text: Any) -> str:
    """Like `safe` but without rich escaping (for JSON and files)."""
    return _CONTROL.sub("?", str(text))


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


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = ()) -> Table:
    """Build a rich table; the title and cells are sanitised with `safe` (titles are often file paths)."""
    t = Table(title=None if title is None else safe(title), title_justify="left", header_style="bold")
    for i, name in enumerate(columns):
        t.add_column(name, justify="right" if i in numeric else "left")
    for row in rows:
        t.add_row(*[c if hasattr(c, "__rich_console__") else safe(c) for c in row])
    return t


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (one JSON document)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


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

"""Downloading a `--weights`/`--pretrained` value with a progress bar (shared by the commands and `tsn weights`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def fetch_value(value: str, flag: str, sha256: Optional[str] = None) -> Path:
    """A `--weights`/`--pretrained` value -> a local path: a name or URL is downloaded (progress bar on stderr)
    into the cache or taken from it; a path is returned as is (its sha256 checked when `sha256` is given)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from tsn_cli import ui  # in the functions, not at the top: `tsn --help` needs no rich progress or tables
    from tsn_cli.errors import ConfigError
    from tsn_cli.model import hub

    pinned = hub.check_hex(sha256)
    remote = hub.remote_source(value)
    if remote is None:
        path = Path(value)
        if not path.exists() and hub.unknown_hint(value):  # a mistyped name; other paths: the caller's message
            raise ConfigError(f"{flag}: file not found: {value}{hub.unknown_hint(value)}")
        if pinned and path.is_file():
            hub.check_local_sha(path, pinned, flag)
        return path
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=ui.err_console,
        transient=True,
    )
    task = {"id": None}

    def on_start(rem, have: int) -> None:
        again = f" (continuing after {have} bytes)" if have else ""
        ui.err_console.print(f"downloading {ui.safe(rem.url)} -> {ui.safe(rem.cache)}{again}", soft_wrap=True)
        bar.start()
        task["id"] = bar.add_task(rem.cache.name, total=None)

    def progress(done: int, total: Optional[int]) -> None:
        bar.update(task["id"], completed=done, total=total)

    try:
        got = hub.fetch(remote, pinned, progress, on_start)
    finally:
        bar.stop()
    what = f"{value} ({remote.entry.describe()})" if remote.entry else value
    if got.downloaded:
        ui.info(f"[dim]{flag} {ui.safe(what)}: downloaded and verified, sha256 {got.sha256} recorded[/]")
    else:
        ui.info(f"[dim]{flag} {ui.safe(what)}: using the cached {ui.safe(got.path)}[/]")
    if remote.entry and remote.entry.seg_num:
        ui.info(
            f"[dim]{remote.entry.name} was trained with {remote.entry.seg_num} segments per clip "
            f"(--seg-num {remote.entry.seg_num})[/]"
        )
    return got.path

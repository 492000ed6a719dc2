"""`prepare check`: run extraction's checks on every entry of any list file (ours or PaddleVideo's).

Parsing is `tsn_cli.data.lists.read_list` (the same parser training uses, so "check passes" means "the
loader accepts it"); the per-entry checks are `tsn_cli.prepare.frames.check_video` / `check_frame_dir`,
the same code extraction uses, run in parallel processes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tsn_cli.errors import DataError
from tsn_cli.fsutil import MAX_LIST_BYTES, read_regular_file
from tsn_cli.prepare import BadEntry
from tsn_cli.prepare.frames import ExtractOptions, RunStats, VideoJob, VideoResult, run_jobs

_TRY_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm")


@dataclass
class CheckReport:
    """Result of `check_list`; `to_dict()` is the --json document."""

    list_file: str
    fmt: str
    entries: int = 0  # parsable lines
    ok: int = 0
    frames: int = 0  # frames decoded (videos) or on disk (frame folders) for the good entries
    bad: list[BadEntry] = field(default_factory=list)  # entries whose file/folder failed a check
    bad_lines: list[BadEntry] = field(default_factory=list)  # lines the parser rejected
    clean_file: str | None = None
    clean_rows: int = 0
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """1 if any line or entry is bad, else 0."""
        return 1 if (self.bad or self.bad_lines) else 0

    def to_dict(self) -> dict:
        """Plain dict for JSON output (includes the exit code)."""
        d = asdict(self)
        d["exit_code"] = self.exit_code
        return d


def detect_format(list_file: str | os.PathLike) -> str:
    """'frames' if most content lines end in two integers (frame_dir num_frames label), else 'video'.

    A majority (not all) so that a few broken lines do not flip the format and hide the real problems."""
    try:
        text = read_regular_file(list_file, MAX_LIST_BYTES, "list file", DataError)[: 1 << 20]
        text = text.decode("utf-8-sig", errors="replace")
    except OSError as exc:
        raise DataError(f"{list_file}: cannot read list file ({exc.strerror or exc})") from exc
    lines = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise DataError(f"{list_file}: list is empty")

    def is_int(s: str) -> bool:
        return s.lstrip("-").isdigit()

    frames = sum(1 for p in lines if len(p) >= 3 and is_int(p[-1]) and is_int(p[-2]))
    return "frames" if 2 * frames > len(lines) else "video"


def _resolve_video(path: str, suffix_given: bool) -> str:
    """PaddleVideo UCF101 lists carry no extension: if `path` is missing and has none, try common ones."""
    if suffix_given or os.path.exists(path) or os.path.splitext(path)[1]:
        return path
    for ext in _TRY_SUFFIXES:
        if os.path.exists(path + ext):
            return path + ext
    return path


def check_list(
    list_file: str | os.PathLike,
    fmt: str = "auto",
    data_root: str | os.PathLike | None = None,
    video_suffix: str = "",
    full: bool = True,
    workers: int | None = None,
    write_clean: str | os.PathLike | None = None,
    on_result: Callable[[VideoResult, RunStats], None] | None = None,
    on_start: Callable[[int, str], None] | None = None,
) -> CheckReport:
    """Check every entry of `list_file`; optionally write the good lines (verbatim) to `write_clean`.

    `fmt` is "auto" (detected from the last fields), "video" or "frames". `full=False` only opens videos
    and decodes their first frame. Raises DataError for a missing/empty/unparsable list.
    """
    from tsn_cli.data.lists import read_list
    from tsn_cli.fsutil import atomic_write_bytes

    if fmt not in ("auto", "video", "videos", "frames"):
        raise DataError(f"unknown list format {fmt!r} (allowed: auto, video, frames)")
    if not Path(list_file).is_file():
        raise DataError(f"{list_file}: list file not found")
    fmt = detect_format(list_file) if fmt == "auto" else ("video" if fmt == "videos" else fmt)
    parsed = read_list(list_file, fmt=fmt, data_root=data_root, video_suffix=video_suffix)
    rep = CheckReport(list_file=str(list_file), fmt=fmt, entries=len(parsed.records))
    for msg in parsed.bad_lines:
        # read_list's messages are "FILE:LINE: reason".
        where, _, reason = msg.rpartition(": ")
        rep.bad_lines.append(
            BadEntry(path="(line)", reason=reason or msg, where=os.path.basename(where) if where else "")
        )

    jobs = []
    for rec in parsed.records:
        key = f"{rec.path}"
        if fmt == "frames":
            jobs.append(VideoJob(src=rec.path, key=key, kind="frames", expect=rec.num_frames))
        else:
            jobs.append(VideoJob(src=_resolve_video(rec.path, bool(video_suffix)), key=key))
    if on_start is not None:
        on_start(len(jobs), "checking " + ("frame folders" if fmt == "frames" else "videos"))
    stats = run_jobs(jobs, ExtractOptions(full_check=full), workers=workers, on_result=on_result)
    rep.seconds = round(stats.seconds, 3)
    good_lines: set[int] = set()
    for rec, res in zip(parsed.records, stats.results, strict=False):
        if res.ok:
            rep.ok += 1
            rep.frames += res.frames
            good_lines.add(rec.line)
        else:
            rep.bad.append(BadEntry(res.src, res.reason or "bad", f"{Path(list_file).name}:{rec.line}"))

    if write_clean is not None:
        raw = read_regular_file(list_file, MAX_LIST_BYTES, "list file", DataError)
        raw = raw.decode("utf-8-sig", errors="surrogateescape").splitlines()
        keep = [ln.rstrip() for i, ln in enumerate(raw, start=1) if i in good_lines]
        atomic_write_bytes(write_clean, "".join(ln + "\n" for ln in keep).encode("utf-8", "surrogateescape"))
        rep.clean_file, rep.clean_rows = str(write_clean), len(keep)
    return rep

"""Dataset preparation: file lists (UCF101, Kinetics-400), frame extraction, list checking, demo data.

Modules: `demo` (synthetic UCF101-layout dataset), `ucf101`, `k400`, `folder`, `csvfile` (list builders), `runner`
(what they share: their options, the parallel check/extraction of the videos, shards, list writing), `labelled`
(lists of a class-labelled video set, for folder and csv), `split` (hash-based train/val/test assignment),
`frames` (parallel, resumable decoding/extraction), `check` (checks any list file), `spec` (dataset.yaml, written
here and read by `--data`). This package module holds the small report types they share; it imports nothing
heavy, so `tsn --help` stays fast.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class BadEntry:
    """One entry left out of the lists: `path` as the user knows it (list entry or file), and why."""

    path: str
    reason: str
    where: str = ""  # e.g. "trainlist01.txt:12" or "train.csv:3" for entries that came from a list


@dataclass
class ListInfo:
    """One list file written: its path, kind ("videos" | "frames" | "labels"), subset and split, row count."""

    path: str
    kind: str
    rows: int
    subset: str = ""
    split: int | None = None


@dataclass
class PrepareReport:
    """Everything `prepare ucf101` / `prepare k400` did; `to_dict()` is the --json document."""

    dataset: str
    root: str
    out: str
    num_classes: int = 0
    videos: int = 0  # unique videos referenced by the selected splits/subsets
    ok: int = 0
    lists: list[ListInfo] = field(default_factory=list)
    bad: list[BadEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extraction: dict | None = None  # extracted / existing / frames / seconds / frames_per_s when --frames
    checks: str = "quick"  # "quick": opened + first frame decoded; "full": every frame decoded (--verify/--frames)
    spec: str | None = None  # the dataset.yaml written (None in shard mode)
    shard: str | None = None  # "I/N" when only shard I of N was extracted (no lists written)
    other_files: int = 0  # files in the dataset folders that are not videos (prepare folder)
    splits: dict = field(default_factory=dict)  # subset -> {"videos": n, "classes": k} (prepare folder/csv)

    @property
    def exit_code(self) -> int:
        """0 when nothing was skipped, 1 when some entry was left out (a real failure raises instead)."""
        return 1 if self.bad else 0

    def to_dict(self) -> dict:
        """Plain dict for JSON output (includes the exit code)."""
        d = asdict(self)
        d["exit_code"] = self.exit_code
        return d


def list_entry_path(target: str | os.PathLike, list_dir: str | os.PathLike, absolute: bool) -> str:
    """How a file or folder is written into a list in `list_dir`: relative to it (portable) or absolute.

    Separators are always '/', so a list written on one OS reads on another.
    """
    target_abs = os.path.abspath(target)
    if absolute:
        return Path(target_abs).as_posix()
    return Path(os.path.relpath(target_abs, os.path.abspath(list_dir))).as_posix()

"""What `prepare ucf101` and `prepare k400` share: their options, the parallel check/extraction of every video
and the list files written from its outcome.

A preparer reads its dataset's annotations into `VideoJob`s (one per unique video), hands them to
`process_jobs`, then writes each subset's lists with `write_subset_lists` and the label file with
`write_label_list`. Only the annotation formats, the output names and the folder layout differ per dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tsn_cli.fsutil import ensure_dir, exclusive_lock
from tsn_cli.prepare import BadEntry, ListInfo, PrepareReport, list_entry_path
from tsn_cli.prepare.frames import (
    DEFAULT_JPEG_QUALITY,
    SETTINGS_FILE,
    ExtractOptions,
    RunStats,
    VideoJob,
    VideoResult,
    run_jobs,
    settings_change,
)

OnStart = Callable[[int, str], None]
OnResult = Callable[[VideoResult, RunStats], None]


@dataclass
class PrepareOptions:
    """The options every preparer takes (the shared `tsn prepare ucf101/k400` flags).

    `frames`: extract JPEG frames and write frame lists; `out`: folder for the lists (default: the dataset ROOT);
    `absolute`: write absolute paths (default: relative to the list's folder); `short_side`, `jpeg_quality`: how
    frames are written; `workers`: parallel processes (default: all cores); `verify`: without `frames`, decode
    every frame to catch truncated videos; `frames_dir`: where frame folders go (default: OUT/rawframes);
    `shard` (I, N): extract only shard I (1-based) of N and write no lists (see :func:`in_shard`); `wait`: when
    another run holds the outputs, wait for it (`on_wait` is told once) instead of stopping (see :meth:`locked`).
    """

    frames: bool = False
    out: str | os.PathLike | None = None
    absolute: bool = False
    short_side: int | None = None
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    workers: int | None = None
    verify: bool = False
    frames_dir: str | os.PathLike | None = None
    shard: tuple[int, int] | None = None
    wait: bool = False
    on_wait: Callable[[str], None] | None = None

    def folders(self, root: str | os.PathLike) -> tuple[Path, Path]:
        """(list folder, created if needed; frame folder root) for a dataset at `root`."""
        out_dir = Path(self.out) if self.out is not None else Path(root)
        ensure_dir(out_dir)
        frames_root = Path(self.frames_dir) if self.frames_dir is not None else out_dir / "rawframes"
        return out_dir, frames_root

    @contextlib.contextmanager
    def locked(self, out_dir: Path, frames_root: Path) -> Iterator[None]:
        """Hold the run's outputs for the whole run: the list folder and, with frames, the frame root (a
        `.tsn.lock` in each, see `fsutil.exclusive_lock`). A second run writing either stops with "X is in use by
        pid N (another tsn prepare)" (exit 2) or, with `wait`, waits: two runs never mix lists and frames.

        A shard (`--shard I/N`) locks nothing: N shards on N machines write one frame root at the same time by
        design. They write no lists, and each video folder is written under a unique temporary name and renamed
        whole, with its settings recorded inside it, so shards (and a plain run beside them) only ever repeat work,
        never leave a mixed or partial folder under its final name."""
        if self.shard is not None:
            yield
            return
        folders = {os.path.realpath(out_dir): out_dir}
        if self.frames:  # created by its lock, once the list folder's is held
            folders.setdefault(os.path.realpath(frames_root), frames_root)
        with contextlib.ExitStack() as stack:
            for _, folder in sorted(folders.items()):  # one order for every run: two waiting runs never deadlock
                lock = exclusive_lock(folder, what="tsn prepare", wait=self.wait, on_wait=self.on_wait, inside=True)
                stack.enter_context(lock)
            yield


def _frame_settings(frames_root: Path) -> dict | None:
    """The settings the frame root records (written by complete unsharded runs; read for folders written before
    each folder had its own record), or None."""
    from tsn_cli.prepare.frames import read_settings

    return read_settings(frames_root / SETTINGS_FILE) or None


def parse_shard(text: str) -> tuple[int, int]:
    """`"I/N"` -> (I, N) with 1 <= I <= N; TsnError naming the flag otherwise."""
    from tsn_cli.errors import TsnError

    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise TsnError(f"--shard {text}: expected I/N, e.g. --shard 1/4 (shard 1 of 4)")
    i, n = (int(p) for p in parts)
    if n < 1 or not 1 <= i <= n:
        raise TsnError(f"--shard {text}: I must be 1..N (shards are numbered from 1: 1/{max(n, 1)} is the first)")
    return i, n


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Whether the video named `key` (its entry path) belongs to shard (I, N): a hash of the key, so every
    machine running the same command agrees without talking to the others, and shards are disjoint."""
    i, n = shard
    return int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()[:8], "big") % n == i - 1


def process_jobs(
    jobs: list[VideoJob],
    report: PrepareReport,
    opts: PrepareOptions,
    frames_root: Path,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
) -> list[VideoResult]:
    """Check or extract every job in parallel and record the outcome in `report` (bad entries, counts, extraction
    summary); returns the per-job results in job order. `on_start(total, description)` and `on_result(result,
    stats)` drive a progress bar. With `opts.shard`, only that shard's jobs run and only their results are
    returned (the caller then writes no lists)."""
    if opts.shard is not None:
        if not opts.frames:
            from tsn_cli.errors import TsnError

            raise TsnError("--shard shares out frame extraction: add --frames (a plain check needs no shards)")
        jobs = [j for j in jobs if in_shard(j.key, opts.shard)]
        report.shard = f"{opts.shard[0]}/{opts.shard[1]}"
    if on_start is not None:
        what = "extracting frames" if opts.frames else ("verifying videos" if opts.verify else "checking videos")
        on_start(len(jobs), what)
    # each frame folder records its settings, so a run (a shard too) judges each folder by its own record
    extract = ExtractOptions(
        short_side=opts.short_side,
        jpeg_quality=opts.jpeg_quality,
        full_check=opts.verify,
        legacy=_frame_settings(frames_root) if opts.frames else None,
    )
    stats = run_jobs(jobs, extract, workers=opts.workers, on_result=on_result)
    redone: dict[str, int] = {}
    for res in stats.results:
        if res.previous is not None:
            change = settings_change(res.previous, extract.settings())
            redone[change] = redone.get(change, 0) + 1
    for change, n in redone.items():
        report.warnings.append(
            f"{n} frame folder{'s' if n != 1 else ''} in {frames_root} had other settings ({change}): extracted again"
        )
    if opts.frames and opts.shard is None:
        # the frame root's record: every folder now holds frames of these settings (read only for folders that
        # predate per-folder records; a shard vouches only for its own folders, which record themselves)
        from tsn_cli.fsutil import atomic_write_text

        atomic_write_text(frames_root / SETTINGS_FILE, json.dumps(extract.settings(), indent=2) + "\n")
    for res in stats.results:
        if not res.ok:
            report.bad.append(BadEntry(res.key, res.reason or "bad", ""))
    report.ok = sum(1 for r in stats.results if r.ok)
    report.checks = "full" if (opts.frames or opts.verify) else "quick"
    if opts.frames:
        report.extraction = extraction_summary(stats, frames_root)
    return stats.results


def extraction_summary(stats: RunStats, frames_root: Path) -> dict:
    """The `extraction` block of a report: what was extracted now vs found complete, frames and speed."""
    extracted = [r for r in stats.results if r.status == "extracted"]
    return {
        "frames_dir": str(frames_root.resolve()),
        "extracted": len(extracted),
        "existing": sum(1 for r in stats.results if r.status == "existing"),
        "extracted_again": sum(1 for r in extracted if r.previous is not None),  # had other settings
        "bad": stats.bad,
        "frames": stats.frames,
        "frames_extracted": sum(r.frames for r in extracted),
        "seconds": round(stats.seconds, 3),
        "frames_per_s": round(sum(r.frames for r in extracted) / stats.seconds, 1) if stats.seconds > 0 else 0.0,
    }


def write_subset_lists(
    report: PrepareReport,
    items: Iterable[tuple[str, VideoResult | None, int]],
    opts: PrepareOptions,
    out_dir: Path,
    video_list: Path,
    frame_list: Path,
    subset: str,
    split: int | None = None,
) -> None:
    """Write one subset's video list (and, with `opts.frames`, its frame list) and record them in `report`.

    `items` are (entry key, its result or None, label) in list order; entries without a usable result are left out
    (they are already in `report.bad`) and an entry listed twice is written once.
    """
    from tsn_cli.data.lists import show, unsafe_name, write_list

    seen: set[str] = set()
    vrows, frows = [], []
    for key, r, label in items:
        if r is None or not r.ok or key in seen:
            continue
        seen.add(key)
        why = unsafe_name(list_entry_path(r.src, out_dir, opts.absolute)) or (unsafe_name(r.dst) if r.dst else None)
        if why:  # a file named with a line break would add a list line: report it, leave it out
            report.bad.append(BadEntry(show(key), f"name {why}"))
            continue
        vrows.append((list_entry_path(r.src, out_dir, opts.absolute), label))
        if opts.frames and r.dst and r.frames > 0:
            frows.append((list_entry_path(r.dst, out_dir, opts.absolute), r.frames, label))
    report.lists.append(ListInfo(str(video_list), "videos", write_list(video_list, vrows), subset, split))
    if opts.frames:
        report.lists.append(ListInfo(str(frame_list), "frames", write_list(frame_list, frows), subset, split))


def write_label_list(report: PrepareReport, path: Path, names: list[str]) -> None:
    """Write the label file ("0 name" per class, 0-based) and record it in `report`."""
    from tsn_cli.data.lists import write_list

    report.lists.append(ListInfo(str(path), "labels", write_list(path, list(enumerate(names)))))


def write_dataset_spec(
    report: PrepareReport,
    out_dir: Path,
    opts: PrepareOptions,
    lists: dict[str, Path | None],
    label_list: Path,
    num_classes: int,
    name: str | None = None,
) -> None:
    """Write dataset.yaml (see `tsn_cli.prepare.spec`) for the lists of `opts`' format and record it in `report`.

    `lists` maps train/val/test to the video-list path; with frames the frame list beside it is named instead
    (found among the lists already recorded in `report`)."""
    from tsn_cli.prepare.spec import SPEC_NAME, write_spec

    if opts.frames:
        frame_of = {}
        written = report.lists
        for i, info in enumerate(written):  # each video list is followed by its frame list
            if info.kind == "videos" and i + 1 < len(written) and written[i + 1].kind == "frames":
                frame_of[os.path.abspath(info.path)] = Path(written[i + 1].path)
        lists = {k: (frame_of.get(os.path.abspath(p)) if p is not None else None) for k, p in lists.items()}
    path = write_spec(
        out_dir,
        source=report.dataset,
        frames=opts.frames,
        lists=lists,
        label_list=label_list,
        num_classes=num_classes,
        name=name or SPEC_NAME,
    )
    if report.spec is None:
        report.spec = str(path)

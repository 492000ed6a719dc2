"""`tsn prepare folder DIR`: a folder per class (DIR/<class>/<clip>.mp4, sub-folders allowed) -> lists.

Classes are the sub-folders of DIR that hold videos, in sorted order (label 0 = first name). Files that are not
videos are counted and reported, never listed; hidden files and folders, and the output and frame folders
when they lie inside DIR, are skipped. Splits: see `tsn_cli.prepare.split`; output: see `labelled`.
"""

from __future__ import annotations

import os
from pathlib import Path

from tsn_cli.errors import DataError
from tsn_cli.prepare import PrepareReport
from tsn_cli.prepare.labelled import Clip, SplitOptions, posix_rel, prepare_labelled
from tsn_cli.prepare.runner import OnResult, OnStart, PrepareOptions
from tsn_cli.prepare.split import check_fractions, compile_group

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")


def scan(root: Path, skip: list[Path]) -> tuple[dict[str, list[Path]], int, list[str]]:
    """(class name -> its video files, sorted; number of other files; sub-folders without videos)."""
    skip_r = {p.resolve() for p in skip if p.exists()}
    classes: dict[str, list[Path]] = {}
    other, empty = 0, []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir() or Path(entry.path).resolve() in skip_r:
            continue
        videos = []
        for dirpath, dirnames, filenames in os.walk(entry.path):
            dp = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (dp / d).resolve() not in skip_r)
            for f in sorted(filenames):
                if f.startswith("."):
                    continue
                if os.path.splitext(f)[1].lower() in VIDEO_EXTS:
                    videos.append(dp / f)
                else:
                    other += 1
        if videos:
            classes[entry.name] = videos
        else:
            empty.append(entry.name)
    return classes, other, empty


def prepare_folder(
    root: str | os.PathLike,
    opts: PrepareOptions | None = None,
    split_opts: SplitOptions | None = None,
    *,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
) -> PrepareReport:
    """Write train/val[/test] lists, label_list.txt and dataset.yaml for DIR/<class>/<video> (and, with
    `opts.frames`, extract frames). Bad videos are left out and reported; DataError when DIR has no class folder
    with videos."""
    opts = opts or PrepareOptions()
    split_opts = split_opts or SplitOptions()
    check_fractions(split_opts.val, split_opts.test)
    if split_opts.group is not None:
        compile_group(split_opts.group)
    root_p = Path(root)
    if not root_p.is_dir():
        raise DataError(f"{root_p}: dataset folder not found")
    out_dir, frames_root = opts.folders(root_p)
    found, other, empty = scan(root_p, skip=[frames_root, out_dir])  # when they lie inside DIR: not classes
    if not found:
        raise DataError(
            f"{root_p}: no class folders with videos (expected {root_p}/<class>/<clip>.mp4; "
            f"video extensions: {' '.join(VIDEO_EXTS)})"
        )
    names = sorted(found)
    clips = [Clip(rel=posix_rel(v, root_p), src=v, label=i) for i, name in enumerate(names) for v in found[name]]
    report = PrepareReport(
        dataset="folder",
        root=str(root_p.resolve()),
        out=str(out_dir.resolve()),
        num_classes=len(names),
        other_files=other,
    )
    if other:
        report.warnings.append(
            f"{other} file{'s' if other != 1 else ''} in the class folders "
            f"{'are' if other != 1 else 'is'} not a video (by extension) and left out"
        )
    for name in empty:
        report.warnings.append(f"folder {name} holds no videos: not a class")
    if len(names) < 2:
        report.warnings.append(f"only one class ({names[0]}): a classifier needs at least 2 class folders")
    return prepare_labelled(report, root_p, clips, names, opts, split_opts, on_start=on_start, on_result=on_result)

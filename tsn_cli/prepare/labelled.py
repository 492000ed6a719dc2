"""Lists for a set of videos with known classes (what `prepare folder` and `prepare csv` read): check or extract
every video, assign splits to the usable ones (see `split`), write the lists, the label list and dataset.yaml.

Output in OUT (default: the dataset folder)::

    train_videos.txt / val_videos.txt [/ test_videos.txt]           "<path> <label>"
    train_rawframes.txt / val_rawframes.txt [/ test_rawframes.txt]  "<frame_dir> <num_frames> <label>" (frames)
    label_list.txt                                                  "0 name" per class (0-based, sorted names)
    dataset.yaml                                                    for `tsn train --data`
    rawframes/<video path without extension>/img_00001.jpg ...      (frames)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tsn_cli.prepare import PrepareReport
from tsn_cli.prepare.frames import VideoJob
from tsn_cli.prepare.runner import (
    OnResult,
    OnStart,
    PrepareOptions,
    process_jobs,
    write_dataset_spec,
    write_label_list,
    write_subset_lists,
)
from tsn_cli.prepare.split import SUBSETS, assign, compile_group, group_key

LABEL_FILE = "label_list.txt"


@dataclass
class Clip:
    """One video: `rel` its path under the dataset folder ('/'-separated, the name in reports), its label id,
    where it came from (a CSV line) and its split when the input gives one."""

    rel: str
    src: Path
    label: int
    where: str = ""
    split: str | None = None


@dataclass
class SplitOptions:
    """How splits are assigned to clips that have none: fractions, seed and the group regex."""

    val: float = 0.2
    test: float = 0.0
    seed: int = 0
    group: str | None = None  # default: split.DEFAULT_GROUP


def frame_dirs(clips: list[Clip], frames_root: Path) -> list[Path]:
    """Each clip's frame folder: FRAMES/<path without extension>; clips whose paths differ only in the extension
    (clip.mp4, clip.avi) keep it (FRAMES/a/clip.mp4/) so that they never share a folder."""
    stems: dict[str, int] = {}
    for c in clips:
        s = str(PurePosixPath(c.rel).with_suffix(""))
        stems[s] = stems.get(s, 0) + 1
    out = []
    for c in clips:
        s = str(PurePosixPath(c.rel).with_suffix(""))
        out.append(frames_root.joinpath(*(c.rel if stems[s] > 1 else s).split("/")))
    return out


def prepare_labelled(
    report: PrepareReport,
    root: Path,
    clips: list[Clip],
    names: list[str],
    opts: PrepareOptions,
    split_opts: SplitOptions,
    *,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
) -> PrepareReport:
    """Check/extract `clips`, then write the lists of the usable ones, the label list (`names`) and dataset.yaml
    into OUT; everything is recorded in `report`. Clips without a split are assigned one by `split_opts`."""
    from tsn_cli.prepare.split import DEFAULT_GROUP

    pattern = compile_group(split_opts.group or DEFAULT_GROUP)
    out_dir, frames_root = opts.folders(root)
    with opts.locked(out_dir, frames_root):  # the whole run: a second one stops or waits
        dsts = frame_dirs(clips, frames_root) if opts.frames else [None] * len(clips)
        jobs = [
            VideoJob(src=str(c.src), dst=str(d) if d else None, key=c.rel) for c, d in zip(clips, dsts, strict=True)
        ]
        report.videos = len(jobs)
        results = process_jobs(jobs, report, opts, frames_root, on_start=on_start, on_result=on_result)
        if opts.shard is not None:  # one machine's part of the frames; the run without --shard writes the lists
            return report

        ok = [(c, r) for c, r in zip(clips, results, strict=True) if r.ok]
        groups: dict[str, dict[str, int]] = {}
        for c, _ in ok:
            if c.split is None:
                g = groups.setdefault(names[c.label], {})
                key = group_key(PurePosixPath(c.rel).stem, pattern)
                g[key] = g.get(key, 0) + 1
        plan = assign(groups, split_opts.val, split_opts.test, split_opts.seed)
        report.warnings.extend(plan.warnings)
        report.warnings.extend(plan.moved)

        by_subset: dict[str, list] = {s: [] for s in SUBSETS}
        for c, r in ok:
            subset = c.split or plan.split[(names[c.label], group_key(PurePosixPath(c.rel).stem, pattern))]
            by_subset[subset].append((c.rel, r, c.label))
        lists: dict[str, Path | None] = {}
        for subset in SUBSETS:
            items = sorted(by_subset[subset], key=lambda t: (t[2], t[0]))
            if subset == "test" and not items and split_opts.test == 0:
                continue  # no test set asked for and none given: no empty test list
            lists[subset] = out_dir / f"{subset}_videos.txt"
            write_subset_lists(report, items, opts, out_dir, lists[subset], out_dir / f"{subset}_rawframes.txt", subset)
            report.splits[subset] = {"videos": len(items), "classes": len({t[2] for t in items})}
        label_list = out_dir / LABEL_FILE
        write_label_list(report, label_list, names)
        write_dataset_spec(report, out_dir, opts, lists, label_list, len(names))

        usable = {c.label for c, _ in ok}
        for i, name in enumerate(names):
            if i not in usable:
                report.warnings.append(f"class {name} (id {i}) has no usable video: the model will never see it")
            elif i not in {t[2] for t in by_subset["train"]}:
                report.warnings.append(f"class {name} (id {i}) has no video in train")
        return report


def posix_rel(path: Path, root: Path) -> str:
    """`path` relative to `root`, '/'-separated (the key a video is reported and sharded by)."""
    return Path(os.path.relpath(path, root)).as_posix()

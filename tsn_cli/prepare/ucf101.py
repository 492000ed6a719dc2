"""UCF101 file lists (PaddleVideo formats and names) and optional frame extraction.

Input (the official download, or PaddleVideo's renamed copy)::

    ROOT/UCF-101/<Class>/v_<Class>_gXX_cYY.avi     (or ROOT/videos/...)
    ROOT/ucfTrainTestlist/classInd.txt             (or ROOT/annotations/...)  "1 ApplyEyeMakeup" (1-based)
    ROOT/ucfTrainTestlist/trainlist0{1,2,3}.txt    "ApplyEyeMakeup/v_..._g08_c01.avi 1"
    ROOT/ucfTrainTestlist/testlist0{1,2,3}.txt     "ApplyEyeMakeup/v_..._g01_c01.avi"

Output in OUT (default ROOT), per split n::

    ucf101_train_split_n_videos.txt / ucf101_val_split_n_videos.txt       "<path.avi> <label>"
    ucf101_train_split_n_rawframes.txt / ucf101_val_split_n_rawframes.txt "<frame_dir> <num_frames> <label>"
    ucf101_label_list.txt                                                   "0 ApplyEyeMakeup" (0-based)
    dataset.yaml        the first selected split for `tsn train --data` (dataset_split_n.yaml each, with several)
    rawframes/<Class>/<video stem>/img_00001.jpg ...                       (with frames=True)

Differences from PaddleVideo's `build_ucf101_file_list.py`, each fixing one of its bugs: labels are 0-based
from classInd by the class folder (the split file's label column is only cross-checked); video paths keep
their extension; paths are relative to the list's folder (or absolute on request) and never cut at a dot;
frame counts are the files on disk (not a prefix count); bad or missing videos and zero-frame folders get
no row and are reported instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tsn_cli.errors import DataError
from tsn_cli.fsutil import MAX_LIST_BYTES, read_regular_file
from tsn_cli.prepare import BadEntry, PrepareReport
from tsn_cli.prepare.frames import VideoJob, safe_join
from tsn_cli.prepare.runner import (
    OnResult,
    OnStart,
    PrepareOptions,
    process_jobs,
    write_dataset_spec,
    write_label_list,
    write_subset_lists,
)
from tsn_cli.prepare.spec import SPEC_NAME

SPLITS = (1, 2, 3)
LABEL_FILE = "ucf101_label_list.txt"
VIDEO_DIRS = ("UCF-101", "videos", "UCF101")
SPLIT_DIRS = ("ucfTrainTestlist", "annotations", "UCF101TrainTestSplits-RecognitionTask/ucfTrainTestlist")


@dataclass
class SplitEntry:
    """One line of a train/test split file: the entry as written, its class, 0-based label and where."""

    rel: str
    cls: str
    label: int
    where: str


def find_layout(root: str | os.PathLike) -> tuple[Path, Path]:
    """Locate the video folder and the split-file folder under ROOT; DataError naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    video_root = next((root / d for d in VIDEO_DIRS if (root / d).is_dir()), None)
    split_dir = next((root / d for d in SPLIT_DIRS if (root / d / "classInd.txt").is_file()), None)
    if split_dir is None and (root / "classInd.txt").is_file():
        split_dir = root
    if video_root is None:
        raise DataError(f"{root}: no video folder (expected {root / 'UCF-101'} with <Class>/*.avi)")
    if split_dir is None:
        raise DataError(f"{root}: no split files (expected {root / 'ucfTrainTestlist' / 'classInd.txt'})")
    return video_root, split_dir


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines; CRLF, BOM and stray whitespace tolerated."""
    try:
        text = read_regular_file(path, MAX_LIST_BYTES, "split file", DataError).decode("utf-8-sig", errors="replace")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]


def read_class_ind(path: str | os.PathLike) -> list[str]:
    """Class names in 0-based label order from classInd.txt ("<1-based id> <Name>" lines)."""
    path = Path(path)
    pairs: dict[int, str] = {}
    for lineno, ln in _lines(path):
        parts = ln.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{path}:{lineno}: expected '<id> <ClassName>', got {ln[:60]!r}")
        cid = int(parts[0])
        if cid in pairs:
            raise DataError(f"{path}:{lineno}: class id {cid} appears twice")
        pairs[cid] = parts[1]
    if not pairs:
        raise DataError(f"{path}: no classes")
    ids = sorted(pairs)
    if ids != list(range(1, len(ids) + 1)):
        raise DataError(f"{path}: class ids must be 1..{len(ids)} (UCF101 classInd is 1-based)")
    names = [pairs[i] for i in ids]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: a class name appears twice")
    return names


def read_split_file(
    path: Path, class_ids: dict[str, int], has_label: bool
) -> tuple[list[SplitEntry], list[BadEntry], list[str]]:
    """Parse a trainlist/testlist file. Returns (entries, bad entries, warnings).

    The label comes from the class folder via classInd (as PaddleVideo does); a trainlist label column that
    disagrees is reported as a warning, since the folder is what the video really is.
    """
    entries, bad, warnings = [], [], []
    for lineno, ln in _lines(path):
        where = f"{path.name}:{lineno}"
        parts = ln.split()
        rel = parts[0]
        if len(parts) > (2 if has_label else 1):
            bad.append(BadEntry(ln, "too many fields (paths with spaces are not UCF101)", where))
            continue
        comps = rel.replace("\\", "/").split("/")
        if len(comps) != 2:
            bad.append(BadEntry(rel, "expected '<Class>/<file>.avi'", where))
            continue
        cls = comps[0]
        if cls not in class_ids:
            bad.append(BadEntry(rel, f"class {cls!r} is not in classInd.txt", where))
            continue
        if has_label and len(parts) == 2:
            if not parts[1].isdigit():
                bad.append(BadEntry(rel, f"label {parts[1]!r} is not an integer", where))
                continue
            if int(parts[1]) != class_ids[cls] + 1:
                warnings.append(
                    f"{where}: label {parts[1]} disagrees with classInd ({cls} = {class_ids[cls] + 1}); using classInd"
                )
        entries.append(SplitEntry(rel, cls, class_ids[cls], where))
    return entries, bad, warnings


def available_splits(split_dir: Path) -> list[int]:
    """Splits n for which both trainlist0n.txt and testlist0n.txt exist."""
    return [
        n
        for n in SPLITS
        if (split_dir / f"trainlist{n:02d}.txt").is_file() and (split_dir / f"testlist{n:02d}.txt").is_file()
    ]


def prepare_ucf101(
    root: str | os.PathLike,
    splits: list[int] | None = None,
    opts: PrepareOptions | None = None,
    *,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
) -> PrepareReport:
    """Write the UCF101 lists for `splits` (default: every split present) and, with `opts.frames`, extract frames.

    Every video referenced by a selected split is checked once: without frames cheaply (exists, non-empty,
    opens, first frame decodes; `opts.verify` decodes every frame to catch truncation), with frames by the
    extraction itself. Bad videos are left out of every list and reported in `PrepareReport.bad`.
    `on_start(total, description)` and `on_result(result, stats)` drive a progress bar.
    Raises DataError for a missing/broken dataset layout and TsnError when outputs cannot be written.
    """
    opts = opts or PrepareOptions()
    video_root, split_dir = find_layout(root)
    out_dir, frames_root = opts.folders(root)
    with opts.locked(out_dir, frames_root):  # the whole run: a second one stops or waits
        classes = read_class_ind(split_dir / "classInd.txt")
        class_ids = {c: i for i, c in enumerate(classes)}

        present = available_splits(split_dir)
        if splits:
            for n in splits:
                if n not in present:
                    raise DataError(f"{split_dir}: split {n} needs trainlist{n:02d}.txt and testlist{n:02d}.txt")
            selected = sorted(set(splits))
        else:
            selected = present
            if not selected:
                raise DataError(f"{split_dir}: no trainlistNN.txt/testlistNN.txt pair found")

        report = PrepareReport(
            dataset="ucf101", root=str(Path(root).resolve()), out=str(out_dir.resolve()), num_classes=len(classes)
        )
        per_split: dict[tuple[int, str], list[SplitEntry]] = {}
        for n in selected:
            for subset, fname, has_label in (
                ("train", f"trainlist{n:02d}.txt", True),
                ("val", f"testlist{n:02d}.txt", False),
            ):
                entries, bad, warns = read_split_file(split_dir / fname, class_ids, has_label)
                per_split[(n, subset)] = entries
                report.bad.extend(bad)
                report.warnings.extend(warns)

        # One job per unique video across all selected splits: decode once even if three splits use it.
        jobs: list[VideoJob] = []
        job_of: dict[str, int] = {}
        unsafe: dict[str, str] = {}
        for entries in per_split.values():
            for e in entries:
                if e.rel in job_of or e.rel in unsafe:
                    continue
                try:
                    src = safe_join(video_root, e.rel)
                    dst = safe_join(frames_root, f"{e.cls}/{Path(e.rel).stem}") if opts.frames else None
                except ValueError as exc:
                    unsafe[e.rel] = f"unsafe path: {exc}"
                    report.bad.append(BadEntry(e.rel, unsafe[e.rel], e.where))
                    continue
                job_of[e.rel] = len(jobs)
                jobs.append(VideoJob(src=str(src), dst=str(dst) if dst else None, key=e.rel))
        report.videos = len(jobs) + len(unsafe)

        results = process_jobs(jobs, report, opts, frames_root, on_start=on_start, on_result=on_result)
        if opts.shard is not None:  # one machine's part of the frames; the run without --shard writes the lists
            return report

        for n in selected:
            for subset in ("train", "val"):
                entries = per_split[(n, subset)]
                items = [(e.rel, results[job_of[e.rel]] if e.rel in job_of else None, e.label) for e in entries]
                write_subset_lists(
                    report,
                    items,
                    opts,
                    out_dir,
                    out_dir / f"ucf101_{subset}_split_{n}_videos.txt",
                    out_dir / f"ucf101_{subset}_split_{n}_rawframes.txt",
                    subset,
                    n,
                )
        write_label_list(report, out_dir / LABEL_FILE, classes)
        # dataset.yaml describes the first selected split; with several, dataset_split_N.yaml describes split N
        for n in selected:
            lists = {s: out_dir / f"ucf101_{s}_split_{n}_videos.txt" for s in ("train", "val")}
            names = ([SPEC_NAME] if n == selected[0] else []) + (
                [f"dataset_split_{n}.yaml"] if len(selected) > 1 else []
            )
            for name in names:
                write_dataset_spec(report, out_dir, opts, lists, out_dir / LABEL_FILE, len(classes), name)
        return report

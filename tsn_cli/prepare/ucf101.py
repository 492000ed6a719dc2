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
from typing import Callable

from tsn_cli.errors import DataError
from tsn_cli.fsutil import ensure_dir
from tsn_cli.prepare import BadEntry, ListInfo, PrepareReport, list_entry_path
from tsn_cli.prepare.frames import ExtractOptions, RunStats, VideoJob, VideoResult, run_jobs, safe_join

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
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
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


def read_split_file(path: Path, class_ids: dict[str, int], has_label: bool) -> tuple[list[SplitEntry], list[BadEntry], list[str]]:
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
                warnings.append(f"{where}: label {parts[1]} disagrees with classInd ({cls} = {class_ids[cls] + 1}); using classInd")
        entries.append(SplitEntry(rel, cls, class_ids[cls], where))
    return entries, bad, warnings


def available_splits(split_dir: Path) -> list[int]:
    """Splits n for which both trainlist0n.txt and testlist0n.txt exist."""
    return [n for n in SPLITS if (split_dir / f"trainlist{n:02d}.txt").is_file() and (split_dir / f"testlist{n:02d}.txt").is_file()]


def prepare_ucf101(
    root: str | os.PathLike,
    splits: list[int] | None = None,
    frames: bool = False,
    out: str | os.PathLike | None = None,
    absolute: bool = False,
    short_side: int | None = None,
    jpeg_quality: int = 95,
    workers: int | None = None,
    verify: bool = False,
    frames_dir: str | os.PathLike | None = None,
    on_result: Callable[[VideoResult, RunStats], None] | None = None,
    on_start: Callable[[int, str], None] | None = None,
) -> PrepareReport:
    """Write the UCF101 lists for `splits` (default: every split present) and, with `frames`, extract frames.

    Every video referenced by a selected split is checked once: without `frames` cheaply (exists, non-empty,
    opens, first frame decodes; `verify=True` decodes every frame to catch truncation), with `frames` by the
    extraction itself. Bad videos are left out of every list and reported in `PrepareReport.bad`.
    `on_start(total, description)` and `on_result(result, stats)` drive a progress bar.
    Raises DataError for a missing/broken dataset layout and TsnError when outputs cannot be written.
    """
    from tsn_cli.data.lists import write_list

    video_root, split_dir = find_layout(root)
    out_dir = Path(out) if out is not None else Path(root)
    ensure_dir(out_dir)
    frames_root = Path(frames_dir) if frames_dir is not None else out_dir / "rawframes"
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

    report = PrepareReport(dataset="ucf101", root=str(Path(root).resolve()), out=str(out_dir.resolve()), num_classes=len(classes))
    per_split: dict[tuple[int, str], list[SplitEntry]] = {}
    for n in selected:
        for subset, fname, has_label in (("train", f"trainlist{n:02d}.txt", True), ("val", f"testlist{n:02d}.txt", False)):
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
                dst = safe_join(frames_root, f"{e.cls}/{Path(e.rel).stem}") if frames else None
            except ValueError as exc:
                unsafe[e.rel] = f"unsafe path: {exc}"
                report.bad.append(BadEntry(e.rel, unsafe[e.rel], e.where))
                continue
            job_of[e.rel] = len(jobs)
            jobs.append(VideoJob(src=str(src), dst=str(dst) if dst else None, key=e.rel))
    report.videos = len(jobs) + len(unsafe)

    results = process_jobs(jobs, report, frames=frames, verify=verify, frames_root=frames_root, short_side=short_side,
                           jpeg_quality=jpeg_quality, workers=workers, on_start=on_start, on_result=on_result)

    def ok(e: SplitEntry) -> VideoResult | None:
        i = job_of.get(e.rel)
        r = results[i] if i is not None else None
        return r if r is not None and r.ok else None

    for n in selected:
        for subset in ("train", "val"):
            entries = per_split[(n, subset)]
            seen: set[str] = set()
            vrows, frows = [], []
            for e in entries:
                r = ok(e)
                if r is None or e.rel in seen:
                    continue
                seen.add(e.rel)
                vrows.append((list_entry_path(r.src, out_dir, absolute), e.label))
                if frames and r.dst and r.frames > 0:
                    frows.append((list_entry_path(r.dst, out_dir, absolute), r.frames, e.label))
            vpath = out_dir / f"ucf101_{subset}_split_{n}_videos.txt"
            report.lists.append(ListInfo(str(vpath), "videos", write_list(vpath, vrows), subset, n))
            if frames:
                fpath = out_dir / f"ucf101_{subset}_split_{n}_rawframes.txt"
                report.lists.append(ListInfo(str(fpath), "frames", write_list(fpath, frows), subset, n))
    label_path = out_dir / LABEL_FILE
    report.lists.append(ListInfo(str(label_path), "labels", write_list(label_path, list(enumerate(classes)))))
    return report


def process_jobs(jobs, report: PrepareReport, *, frames: bool, verify: bool, frames_root: Path, short_side, jpeg_quality,
                 workers, on_start=None, on_result=None) -> list[VideoResult]:
    """Check or extract every job in parallel and record the outcome in `report` (bad entries, counts, extraction
    summary); returns the per-job results in job order. Shared by the UCF101 and Kinetics-400 preparers."""
    if on_start is not None:
        on_start(len(jobs), "extracting frames" if frames else ("verifying videos" if verify else "checking videos"))
    opts = ExtractOptions(short_side=short_side, jpeg_quality=jpeg_quality, full_check=verify)
    stats = run_jobs(jobs, opts, workers=workers, on_result=on_result)
    for res in stats.results:
        if not res.ok:
            report.bad.append(BadEntry(res.key, res.reason or "bad", ""))
    report.ok = sum(1 for r in stats.results if r.ok)
    report.checks = "full" if (frames or verify) else "quick"
    if frames:
        report.extraction = extraction_summary(stats, frames_root)
    return stats.results


def extraction_summary(stats: RunStats, frames_root: Path) -> dict:
    """The `extraction` block of a report: what was extracted now vs found complete, frames and speed."""
    extracted = [r for r in stats.results if r.status == "extracted"]
    return {
        "frames_dir": str(frames_root.resolve()),
        "extracted": len(extracted),
        "existing": sum(1 for r in stats.results if r.status == "existing"),
        "bad": stats.bad,
        "frames": stats.frames,
        "frames_extracted": sum(r.frames for r in extracted),
        "seconds": round(stats.seconds, 3),
        "frames_per_s": round(sum(r.frames for r in extracted) / stats.seconds, 1) if stats.seconds > 0 else 0.0,
    }

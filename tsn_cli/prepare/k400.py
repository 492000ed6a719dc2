"""Kinetics-400 file lists (PaddleVideo names and formats) from the official CSVs, and optional frames.

Input: the official annotation CSVs (`label,youtube_id,time_start,time_end,split[,is_cc]`; train.csv and
validate.csv, also accepted as val.csv / kinetics_train.csv / kinetics-400_val.csv ...) and a video folder
in either common layout -- `<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4` or flat -- or anything
else: videos are found by file name anywhere under ROOT (`<id>_<start>_<end>.<ext>` or `<id>.<ext>`).

Output in OUT (default ROOT)::

    Kinetics-400_label_list.txt   "0 abseiling" ... sorted class names, spaces -> underscores (PaddleVideo)
    train.list / val.list         "<path.mp4> <label>"
    train_frames.list / val_frames.list   "<frame_dir> <num_frames> <label>"  (with frames=True)
    rawframes/<label>/<video stem>/img_00001.jpg ...
    dataset.yaml                  the lists above for `tsn train --data`

Every copy of K400 misses videos (dead YouTube links): missing ones are counted, listed and left out, and
the run carries on. Labels are the index in the sorted list of the original class names (the order used by
PaddleVideo's and everyone's label files).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from tsn_cli.data.lists import show, unsafe_name
from tsn_cli.errors import DataError
from tsn_cli.fsutil import MAX_LIST_BYTES, open_regular_text
from tsn_cli.prepare import BadEntry, PrepareReport, list_entry_path
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

LABEL_FILE = "Kinetics-400_label_list.txt"
VIDEO_EXTS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
SUBSETS = ("train", "val")
# Accepted CSV names per subset, most specific first.
_CSV_PATTERNS = {
    "train": re.compile(r"(^|[_\-.])train(ing)?\.csv$", re.I),
    "val": re.compile(r"(^|[_\-.])(val|validate|validation)\.csv$", re.I),
}
_SUBSET_DIRS = {"train": {"train", "training"}, "val": {"val", "validate", "validation", "valid"}}


def label_folder(name: str) -> str:
    """The one-token form of a class name used in the label file and frame folders: spaces -> underscores."""
    return "_".join(name.split())


def find_csvs(annotations: str | os.PathLike) -> dict[str, Path]:
    """The train and val CSVs in the annotation folder; DataError if neither is there."""
    ann = Path(annotations)
    if not ann.is_dir():
        raise DataError(f"{ann}: annotation folder not found")
    found: dict[str, Path] = {}
    for p in sorted(ann.iterdir()):
        for subset, pat in _CSV_PATTERNS.items():
            if subset not in found and p.is_file() and pat.search(p.name):
                found[subset] = p
    if not found:
        raise DataError(f"{ann}: no train.csv / validate.csv (official Kinetics-400 annotations) found")
    return found


def read_csv(path: Path) -> tuple[list[tuple[str, str, int, int, str]], list[BadEntry]]:
    """Rows (label, youtube_id, start, end, where) of one annotation CSV, plus bad rows."""
    rows, bad = [], []
    try:
        fh = open_regular_text(path, MAX_LIST_BYTES, "CSV file", DataError, errors="replace")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty CSV")
        cols = [h.strip().lower() for h in header]
        try:
            i_label, i_id, i_s, i_e = (cols.index(c) for c in ("label", "youtube_id", "time_start", "time_end"))
        except ValueError as exc:
            raise DataError(
                f"{path}: header must have label,youtube_id,time_start,time_end (got {','.join(cols)[:80]})"
            ) from exc
        for lineno, rec in enumerate(reader, start=2):
            where = f"{path.name}:{lineno}"
            if not rec or all(not f.strip() for f in rec):
                continue
            try:
                label, yid = rec[i_label].strip(), rec[i_id].strip()
                start, end = int(float(rec[i_s])), int(float(rec[i_e]))
            except (IndexError, ValueError):
                bad.append(BadEntry(",".join(rec)[:80], "malformed CSV row", where))
                continue
            if not label or not yid:
                bad.append(BadEntry(",".join(rec)[:80], "empty label or youtube_id", where))
                continue
            unsafe = [
                f"{name} {why}"
                for name, why in (("label", unsafe_name(label)), ("youtube_id", unsafe_name(yid)))
                if why
            ]
            if unsafe:  # a quoted newline would split a list line in two
                bad.append(BadEntry(show(",".join(rec)[:80]), unsafe[0], where))
                continue
            rows.append((label, yid, start, end, where))
    return rows, bad


def index_videos(root: Path, skip: list[Path]) -> dict[str, list[Path]]:
    """Map file stem -> video paths for every video file under `root` (hidden folders and `skip` excluded)."""
    skip_r = {p.resolve() for p in skip if p.exists()}
    index: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dp = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (dp / d).resolve() not in skip_r)
        for f in sorted(filenames):
            stem, ext = os.path.splitext(f)
            if ext.lower() in VIDEO_EXTS and not f.startswith("."):
                index.setdefault(stem, []).append(dp / f)
    return index


def _pick(paths: list[Path], subset: str, root: Path) -> Path:
    """Of several files with the same name, prefer the one under a folder named like the subset."""
    if len(paths) > 1:
        for p in paths:
            if any(part.lower() in _SUBSET_DIRS[subset] for part in p.relative_to(root).parts[:-1]):
                return p
    return paths[0]


def prepare_k400(
    root: str | os.PathLike,
    annotations: str | os.PathLike,
    opts: PrepareOptions | None = None,
    *,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
) -> PrepareReport:
    """Write the Kinetics-400 label file and train/val lists (and, with `opts.frames`, extract frames).

    Videos listed in the CSVs but absent under ROOT are reported as "missing" and left out; so are bad
    videos (same checks as `prepare ucf101`). Raises DataError for a missing folder or unusable CSVs.
    """
    opts = opts or PrepareOptions()
    root_p = Path(root)
    if not root_p.is_dir():
        raise DataError(f"{root_p}: video folder not found")
    csvs = find_csvs(annotations)
    out_dir, frames_root = opts.folders(root_p)
    with opts.locked(out_dir, frames_root):  # the whole run: a second one stops or waits
        report = PrepareReport(dataset="k400", root=str(root_p.resolve()), out=str(out_dir.resolve()))

        rows_by_subset: dict[str, list] = {}
        for subset in SUBSETS:
            if subset in csvs:
                rows, bad = read_csv(csvs[subset])
                rows_by_subset[subset] = rows
                report.bad.extend(bad)
        # Class ids from the train CSV (the val CSV only if there is no train CSV): sorted original names.
        source = rows_by_subset.get("train") or rows_by_subset.get("val") or []
        classes = sorted({r[0] for r in source})
        if not classes:
            raise DataError(f"{annotations}: the annotation CSVs have no usable rows")
        class_ids = {c: i for i, c in enumerate(classes)}
        report.num_classes = len(classes)
        if len(classes) != 400:
            report.warnings.append(f"{len(classes)} classes in the annotations (Kinetics-400 has 400)")
        folder_names = [label_folder(c) for c in classes]
        if len(set(folder_names)) != len(folder_names):
            raise DataError(f"{annotations}: two class names differ only in spaces/underscores")

        index = index_videos(root_p, skip=[frames_root])
        jobs: list[VideoJob] = []
        job_of: dict[str, int] = {}
        entries: dict[str, list[tuple[str, int]]] = {s: [] for s in rows_by_subset}
        missing = 0
        for subset, rows in rows_by_subset.items():
            for label, yid, start, end, where in rows:
                if label not in class_ids:
                    report.bad.append(
                        BadEntry(f"{yid}_{start:06d}_{end:06d}", f"class {label!r} is not in the train CSV", where)
                    )
                    continue
                stem = f"{yid}_{start:06d}_{end:06d}"
                cands = index.get(stem) or index.get(yid)
                if not cands:
                    missing += 1
                    report.bad.append(BadEntry(stem, "missing", where))
                    continue
                src = _pick(cands, subset, root_p)
                key = str(src)
                if key not in job_of:
                    try:
                        dst = safe_join(frames_root, f"{label_folder(label)}/{src.stem}") if opts.frames else None
                    except ValueError as exc:
                        report.bad.append(BadEntry(stem, f"unsafe class name: {exc}", where))
                        continue
                    job_of[key] = len(jobs)
                    jobs.append(
                        VideoJob(src=key, dst=str(dst) if dst else None, key=list_entry_path(src, root_p, False))
                    )
                entries[subset].append((key, class_ids[label]))
        report.videos = len(jobs) + missing

        results = process_jobs(jobs, report, opts, frames_root, on_start=on_start, on_result=on_result)
        if opts.frames:
            report.extraction["missing"] = missing
        if opts.shard is not None:  # one machine's part of the frames; the run without --shard writes the lists
            return report

        both = sorted({k for k, _ in entries.get("train", [])} & {k for k, _ in entries.get("val", [])})
        if both:  # a clip in both subsets inflates validation accuracy
            report.warnings.append(f"{len(both)} clips are listed in both train and val (e.g. {show(both[0])})")
        for subset, items in entries.items():
            rows = [(key, results[job_of[key]], label) for key, label in items]
            write_subset_lists(
                report, rows, opts, out_dir, out_dir / f"{subset}.list", out_dir / f"{subset}_frames.list", subset
            )
        write_label_list(report, out_dir / LABEL_FILE, folder_names)
        write_dataset_spec(
            report, out_dir, opts, {s: out_dir / f"{s}.list" for s in entries}, out_dir / LABEL_FILE, len(classes)
        )
        if missing:
            report.warnings.append(f"{missing} videos listed in the CSVs are missing under {root_p}")
        return report

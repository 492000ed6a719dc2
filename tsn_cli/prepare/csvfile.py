"""`tsn prepare csv FILE --root DIR`: a spreadsheet of labels -> lists.

FILE has a header row with the columns `path,label` and optionally `split` (any order, any case):

* `path`: the video, relative to DIR ('/' or '\\' separators);
* `label`: a class name, or a 0-based class id -- all rows one or the other. Names: classes are the sorted
  names. Ids: classes 0..max id, named by their ids;
* `split`: train, val or test. Without the column, splits are assigned as for `prepare folder`.

Errors in the file itself (unknown, missing or repeated columns, a row with another number of fields, an empty
cell, a path listed twice or outside DIR, labels mixing names and ids, an unknown split) stop with one line
naming FILE:LINE. Videos that are missing or bad are left out and reported, as in every prepare command.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath

from tsn_cli.errors import DataError
from tsn_cli.fsutil import MAX_LIST_BYTES, open_regular_text
from tsn_cli.prepare import PrepareReport
from tsn_cli.prepare.frames import safe_join
from tsn_cli.prepare.labelled import Clip, SplitOptions, prepare_labelled
from tsn_cli.prepare.runner import OnResult, OnStart, PrepareOptions
from tsn_cli.prepare.split import SUBSETS, check_fractions, compile_group

COLUMNS = ("path", "label", "split")


def _is_id(label: str) -> bool:
    return label.isascii() and label.isdigit()


def read_rows(path: Path) -> tuple[list[tuple[int, str, str, str | None]], bool]:
    """((line, path, label, split or None) per data row, whether the file has a split column); DataError
    naming the line for anything malformed."""
    try:
        fh = open_regular_text(path, MAX_LIST_BYTES, "CSV file", DataError)  # a FIFO or /dev/zero: one line
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    rows: list[tuple[int, str, str, str | None]] = []
    try:
        with fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file (expected a header row: path,label[,split])")
            cols = [h.strip().lower() for h in header]
            for c in cols:
                if c not in COLUMNS:
                    raise DataError(f"{path}:1: unknown column {c!r} (columns: path,label and optionally split)")
                if cols.count(c) > 1:
                    raise DataError(f"{path}:1: column {c!r} appears twice")
            for c in COLUMNS[:2]:
                if c not in cols:
                    raise DataError(f"{path}:1: missing column {c!r} (the header must name path,label[,split])")
            idx = {c: cols.index(c) for c in cols}
            for rec in reader:
                line = reader.line_num
                if not rec or all(not f.strip() for f in rec):
                    continue
                if len(rec) != len(cols):
                    raise DataError(f"{path}:{line}: {len(rec)} fields, the header has {len(cols)} ({','.join(cols)})")
                cell = {c: rec[i].strip() for c, i in idx.items()}
                for c in cols:
                    if not cell[c]:
                        raise DataError(f"{path}:{line}: empty {c}")
                rows.append((line, cell["path"], cell["label"], cell.get("split")))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (save the spreadsheet as CSV UTF-8)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: no rows after the header")
    return rows, "split" in idx


def read_clips(path: Path, root: Path) -> tuple[list[Clip], list[str]]:
    """The clips and class names a labels CSV describes (see module doc); DataError naming the line otherwise."""
    rows, has_split = read_rows(path)
    first_line, _, first_label, _ = rows[0]
    ids = _is_id(first_label)
    for line, _, label, _ in rows:
        if _is_id(label) != ids:
            kinds = ("an id", "a name") if not ids else ("a name", "an id")
            raise DataError(
                f"{path}:{line}: label {label!r} is {kinds[0]} but line {first_line} has {kinds[1]} "
                f"({first_label!r}): give every label as a name or every label as a 0-based id"
            )
    if ids:
        n = max(int(r[2]) for r in rows) + 1
        names = [str(i) for i in range(n)]
        label_of = {str(i): i for i in range(n)}
        label_of.update({r[2]: int(r[2]) for r in rows})  # "007" is id 7
    else:
        names = sorted({r[2] for r in rows})
        label_of = {name: i for i, name in enumerate(names)}
    clips: list[Clip] = []
    seen: dict[str, int] = {}
    for line, p, label, split in rows:
        where = f"{path.name}:{line}"
        try:
            src = safe_join(root, p)
        except ValueError as exc:
            raise DataError(
                f"{path}:{line}: path {p!r} is not inside --root {root} ({exc}); give it relative to --root"
            ) from None
        rel = str(PurePosixPath(*Path(os.path.relpath(src, root)).parts))
        if rel in seen:
            raise DataError(f"{path}:{line}: {p} is listed twice (also line {seen[rel]})")
        seen[rel] = line
        if split is not None:
            split = split.lower()
            if split not in SUBSETS:
                raise DataError(f"{path}:{line}: split {split!r} must be train, val or test")
        clips.append(Clip(rel=rel, src=src, label=label_of[label], where=where, split=split))
    return clips, names


def prepare_csv(
    csv_file: str | os.PathLike,
    root: str | os.PathLike,
    opts: PrepareOptions | None = None,
    split_opts: SplitOptions | None = None,
    *,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
) -> PrepareReport:
    """Write train/val[/test] lists, label_list.txt and dataset.yaml for the videos a labels CSV names (and,
    with `opts.frames`, extract frames). OUT defaults to --root."""
    opts = opts or PrepareOptions()
    split_opts = split_opts or SplitOptions()
    check_fractions(split_opts.val, split_opts.test)
    if split_opts.group is not None:
        compile_group(split_opts.group)
    root_p, csv_p = Path(root), Path(csv_file)
    if not root_p.is_dir():
        raise DataError(f"--root {root_p}: folder not found")
    if not csv_p.exists():
        raise DataError(f"{csv_p}: file not found")
    clips, names = read_clips(csv_p, root_p)
    out_dir, _ = opts.folders(root_p)
    report = PrepareReport(
        dataset="csv", root=str(root_p.resolve()), out=str(out_dir.resolve()), num_classes=len(names)
    )
    return prepare_labelled(report, root_p, clips, names, opts, split_opts, on_start=on_start, on_result=on_result)

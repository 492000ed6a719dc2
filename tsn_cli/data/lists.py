"""Reading and writing PaddleVideo list files, and label-name files.

Two list formats, as PaddleVideo's VideoDataset / FrameDataset read them:

* ``video``:  ``<path> <label>`` -- ``path + video_suffix`` is a video file.
* ``frames``: ``<frame_dir> <num_frames> <label>`` -- a folder of JPEG frames ``img_00001.jpg`` ...

Differences from PaddleVideo, all in the direction of accepting more and failing clearly:

* Paths may contain spaces: the label (and num_frames) are the LAST whitespace-separated fields and the
  path is everything before them.
* CRLF line endings, a UTF-8 BOM, blank lines and ``#`` comment lines are accepted.
* A bad line (wrong number of fields, a non-integer or negative label, ``label >= num_classes``, a bad
  frame count) does not stop the run: it is reported as ``FILE:LINE: reason`` in ``bad_lines``. A list
  with no usable line at all (or a missing/empty list) raises `DataError`. With ``strict_labels`` (eval) a
  label >= num_classes raises `DataError` naming the line: such a list belongs to another dataset.
* Relative paths resolve against ``data_root`` when given; otherwise against the list's own folder, with
  the current directory as a fallback (PaddleVideo resolves against the CWD) -- the base is chosen once per
  list from the first relative lines, so a list is never resolved half one way and half another.

Names from list files are untrusted: every message goes through `tsn_cli.ui.plain` (control characters
removed) and undecodable bytes are shown escaped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from tsn_cli.errors import DataError
from tsn_cli.ui import plain

FORMATS = ("video", "frames")


@dataclass
class VideoRecord:
    """One usable line of a list file.

    ``path`` is the resolved absolute path of the video file (suffix appended) or frame folder, ``label``
    the 0-based class id, ``num_frames`` the frame count from a frames list (None for videos: the decoder
    counts), ``line`` the 1-based line number and ``list_file`` the list it came from (for messages).
    """

    path: str
    label: int
    num_frames: int | None = None
    line: int = 0
    list_file: str = ""


@dataclass
class ListReadResult:
    """What `read_list` returns: the usable records and one ``FILE:LINE: reason`` message per bad line."""

    records: list[VideoRecord] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


def show(text) -> str:
    """A printable, single-line form of an untrusted name: control characters become '?', undecodable
    bytes (kept as surrogates when reading) are shown as backslash escapes."""
    s = plain(text)
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _read_lines(list_file: Path) -> list[str]:
    """The list's lines with line endings removed; raises DataError for a missing/unreadable file."""
    if not list_file.exists():
        raise DataError(f"{show(list_file)}: list file not found")
    if list_file.is_dir():
        raise DataError(f"{show(list_file)}: is a folder, expected a list file")
    from tsn_cli.fsutil import MAX_LIST_BYTES, read_regular_file

    # a regular file within a size cap: a FIFO would hang the read, /dev/zero fill memory
    raw = read_regular_file(list_file, MAX_LIST_BYTES, "list file", DataError, shown=show(list_file))
    if b"\x00" in raw[:4096]:
        raise DataError(f"{show(list_file)}: not a text list file (binary content)")
    # surrogateescape keeps non-UTF-8 file names byte-exact for os calls.
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    # splitlines handles \n, \r\n and a lone \r.
    return text.splitlines()


def _parse_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _choose_base(rel_paths: list[str], list_dir: Path) -> Path:
    """Base folder for relative paths when no data_root is given: the list's folder unless the first
    relative entries only exist relative to the CWD (PaddleVideo's behaviour)."""
    cwd = Path.cwd()
    if list_dir.resolve() == cwd.resolve():
        return list_dir
    here = there = 0
    for p in rel_paths[:20]:
        here += os.path.exists(list_dir / p)
        there += os.path.exists(cwd / p)
    return cwd if there > here else list_dir


def read_list(
    list_file,
    fmt: str = "video",
    data_root=None,
    video_suffix: str = "",
    num_classes: int | None = None,
    strict_labels: bool = False,
) -> ListReadResult:
    """Parse a PaddleVideo list file into `VideoRecord`s.

    ``fmt`` is ``"video"`` (``path label``) or ``"frames"`` (``frame_dir num_frames label``).
    ``video_suffix`` is appended to video paths (UCF101 lists carry no ``.avi``). Labels ``>= num_classes``
    (when given) are bad lines, or with ``strict_labels`` a `DataError` naming the first of them. Raises
    `DataError` when the list is missing, empty or has no usable line.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown list format {fmt!r} (allowed: video, frames)")
    list_path = Path(list_file)
    name = show(list_file)
    lines = _read_lines(list_path)
    n_fields = 2 if fmt == "video" else 3
    expect = "'path label'" if fmt == "video" else "'frame_dir num_frames label'"

    parsed: list[tuple[int, str, int | None, int]] = []
    bad: list[str] = []
    content_lines = 0
    three_int_tail = 0  # video-format lines that look like frames-format lines
    out_of_range: list[str] = []  # "FILE:LINE: label L" of labels >= num_classes
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        content_lines += 1
        parts = stripped.rsplit(None, n_fields - 1)
        if len(parts) < n_fields:
            got = len(stripped.split())
            bad.append(f"{name}:{lineno}: expected {expect}, got {got} field{'s' if got != 1 else ''}")
            continue
        path = parts[0]
        label_s = parts[-1]
        label = _parse_int(label_s)
        if label is None:
            bad.append(f"{name}:{lineno}: label {show(label_s)!r} is not an integer")
            continue
        if label < 0:
            bad.append(f"{name}:{lineno}: label {label} is negative")
            continue
        if num_classes is not None and label >= num_classes:
            bad.append(f"{name}:{lineno}: label {label} >= num_classes {num_classes}")
            out_of_range.append(f"{name}:{lineno}: label {label}")
            continue
        nframes = None
        if fmt == "frames":
            nframes = _parse_int(parts[1])
            if nframes is None:
                bad.append(f"{name}:{lineno}: num_frames {show(parts[1])!r} is not an integer")
                continue
            if nframes <= 0:
                bad.append(f"{name}:{lineno}: num_frames is {nframes}, the folder has no frames")
                continue
        else:
            tail = path.rsplit(None, 1)
            if len(tail) == 2 and _parse_int(tail[1]) is not None:
                three_int_tail += 1
        parsed.append((lineno, path, nframes, label))

    if content_lines == 0:
        raise DataError(f"{name}: list is empty")
    if strict_labels and out_of_range:
        more = f" (and {len(out_of_range) - 1} more line(s))" if len(out_of_range) > 1 else ""
        raise DataError(
            f"{out_of_range[0]} >= num_classes {num_classes} of the model{more}: is this another dataset's list? "
            "(--list picks the list; the model's classes come from its config)"
        )
    if fmt == "video" and parsed and three_int_tail == len(parsed):
        raise DataError(
            f"{name}: every line looks like 'frame_dir num_frames label' -- this is a frames list; "
            "use the frames format"
        )
    if not parsed:
        raise DataError(f"{name}: no usable line ({len(bad)} bad; first: {bad[0]})")

    suffix = video_suffix if fmt == "video" else ""
    if data_root is not None and str(data_root) != "":
        base = Path(data_root)
    else:
        rel = [p + suffix for _, p, _, _ in parsed if not os.path.isabs(p)]
        base = _choose_base(rel, list_path.parent) if rel else list_path.parent
    base_abs = os.path.abspath(base)

    records = [
        VideoRecord(
            path=os.path.normpath(os.path.join(base_abs, p + suffix)),
            label=label,
            num_frames=nframes,
            line=lineno,
            list_file=str(list_file),
        )
        for lineno, p, nframes, label in parsed
    ]
    return ListReadResult(records=records, bad_lines=bad)


def read_label_names(path) -> list[str]:
    """Read a label-name file and return names indexed by 0-based class id.

    Accepted: ``"<id> <name>"`` lines with 0-based ids (PaddleVideo's ``Kinetics-400_label_list.txt``),
    the same with 1-based ids ``1..N`` (UCF101 ``classInd.txt``; shifted to 0-based), or bare names (one per
    line, id = line order). Names may contain spaces. Gaps or duplicate ids raise `DataError`.
    """
    p = Path(path)
    lines = [(i, ln.strip()) for i, ln in enumerate(_read_lines(p), start=1)]
    lines = [(i, ln) for i, ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise DataError(f"{show(path)}: label file is empty")
    pairs: list[tuple[int, str, int]] = []
    numbered = all(_parse_int(ln.split(None, 1)[0]) is not None and len(ln.split(None, 1)) == 2 for _, ln in lines)
    if not numbered:
        return [ln for _, ln in lines]
    for lineno, ln in lines:
        id_s, label_name = ln.split(None, 1)
        pairs.append((int(id_s), label_name.strip(), lineno))
    ids = sorted(i for i, _, _ in pairs)
    n = len(ids)
    if ids == list(range(n)):
        offset = 0
    elif ids == list(range(1, n + 1)):
        offset = 1
    else:
        seen: dict[int, int] = {}
        for cid, _, lineno in pairs:
            if cid in seen:
                raise DataError(f"{show(path)}:{lineno}: class id {cid} repeats line {seen[cid]}")
            seen[cid] = lineno
        missing = sorted(set(range(ids[0], ids[0] + n)) - set(ids))[:1]
        raise DataError(
            f"{show(path)}: class ids must be 0..N-1 (or 1..N); id {missing[0] if missing else ids[0]} is missing"
        )
    names = [""] * n
    for cid, label_name, _ in pairs:
        names[cid - offset] = label_name
    return names


# Everything str.splitlines() (the reader) breaks a line at, and every other C0/C1 control character.
_UNSAFE_IN_FIELD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def unsafe_name(text) -> str | None:
    """Why `text` cannot be a field of a list line (a line break or other control character that would split the
    line or reach a terminal), or None when it can."""
    m = _UNSAFE_IN_FIELD.search(str(text))
    return None if m is None else f"holds control character {ord(m.group()):#04x} (a list line cannot carry it)"


def write_list(path, rows: Iterable[Sequence]) -> int:
    """Write a list file atomically: one line per row, fields joined by one space, '\\n' endings.

    A row is ``(path, label)`` for a video list or ``(frame_dir, num_frames, label)`` for a frames list.
    Returns the number of lines written. A field with a line break or another control character (which would
    split the line: whoever names files could add list lines) raises `DataError` and nothing is written;
    callers leave such names out and report them first (`unsafe_name`).
    """
    from tsn_cli.fsutil import atomic_write_bytes

    rows = [tuple(row) for row in rows]
    for i, row in enumerate(rows, start=1):
        for f in row:
            why = unsafe_name(f)
            if why:
                raise DataError(f"{show(path)}: refusing to write line {i}: {show(f)!r} {why}")
    lines = [" ".join(str(f) for f in row) for row in rows]
    # surrogateescape round-trips non-UTF-8 names read by read_list.
    atomic_write_bytes(path, "".join(ln + "\n" for ln in lines).encode("utf-8", "surrogateescape"))
    return len(lines)

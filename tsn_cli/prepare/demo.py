"""Synthetic demo dataset in exactly the UCF101 layout, small enough to train a tiny TSN on CPU in minutes.

Layout written under `out_dir` (the same as the official UCF101 download, so `tsn prepare ucf101` runs on it
unchanged)::

    UCF-101/<Class>/v_<Class>_gXX_cYY.avi        320x240 MJPG AVI, 25 fps
    ucfTrainTestlist/classInd.txt                "1 Class" ... (1-based ids, CRLF)
    ucfTrainTestlist/trainlist0{1,2,3}.txt       "Class/v_Class_gXX_cYY.avi <1-based id>" (CRLF)
    ucfTrainTestlist/testlist0{1,2,3}.txt        "Class/v_Class_gXX_cYY.avi" (CRLF)
    example.avi                                  one extra clip of a known class, in no split

Why the classes look the way they do: TSN averages per-frame scores, so frame order carries no information.
Each class therefore differs in what every single frame shows -- a shape, a colour family and a texture --
while position, size, rotation, colours, background and noise are random per video and the object drifts
and pulses over time. Classes are learnable from scratch by a small ResNet at 64-112 px, but not by one
pixel: colours are jittered, backgrounds vary, and random distractor blobs appear.

Groups (gXX) are disjoint between train and test for each split, as in UCF101: split n tests on group n.
Everything is deterministic for a given seed.

One demo per folder: `.tsn-demo.json` records the settings (and whether the demo is complete). An interrupted
demo with the same settings is resumed; anything else already in the folder is refused, because existing videos
are kept and old split files or lists would survive a smaller demo. `overwrite=True` first removes the previous
demo and what `tsn prepare ucf101 DIR` wrote from it (lists, rawframes/), and nothing else.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tsn_cli.errors import TsnError
from tsn_cli.fsutil import LOCK_NAME, atomic_path, atomic_write_bytes, atomic_write_text, exclusive_lock

WIDTH, HEIGHT, FPS = 320, 240, 25
CLIPS_PER_GROUP = 4
MARKER = ".tsn-demo.json"
# what a demo and `tsn prepare ucf101 DIR` on it write into DIR (removed by overwrite; nothing else is)
_DEMO_ENTRIES = (
    "UCF-101",
    "ucfTrainTestlist",
    "example.avi",
    "rawframes",
    "ucf101_label_list.txt",
    "dataset.yaml",
    MARKER,
)
_DEMO_LIST_RE = re.compile(r"^(ucf101_(train|val)_split_\d+_(videos|rawframes)\.txt|dataset_split_\d+\.yaml)$")

# (class name, shape, OpenCV hue 0..179 or None for white/grey, texture). Shape + colour + texture all differ,
# so a classifier can use any of them and a crop that cuts the object still keeps colour/texture cues.
CLASS_SPECS: list[tuple[str, str, int | None, str]] = [
    ("RedDisc", "disc", 0, "solid"),
    ("GreenSquare", "square", 60, "solid"),
    ("BlueTriangle", "triangle", 118, "solid"),
    ("YellowCross", "cross", 28, "solid"),
    ("MagentaStripes", "square", 150, "stripes"),
    ("CyanCheckers", "disc", 90, "checkers"),
    ("OrangeRing", "ring", 12, "solid"),
    ("WhiteStar", "star", None, "solid"),
]
MAX_CLASSES = len(CLASS_SPECS)


def _colour(rng: np.random.Generator, hue: int | None) -> tuple[int, int, int]:
    """A jittered BGR colour of the given hue family (None: a light grey/white)."""
    import cv2

    if hue is None:
        v = int(rng.integers(200, 256))
        tint = rng.integers(-12, 13, size=3)
        return tuple(int(np.clip(v + t, 0, 255)) for t in tint)  # type: ignore[return-value]
    h = (hue + int(rng.integers(-6, 7))) % 180
    s = int(rng.integers(170, 256))
    v = int(rng.integers(170, 256))
    bgr = cv2.cvtColor(np.uint8([[[h, s, v]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def _shape_mask(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """A uint8 mask (255 inside) of one shape centred at (cx, cy) with 'radius' r, rotated by angle (radians)."""
    import cv2

    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    centre = (int(round(cx)), int(round(cy)))

    def poly(points: list[tuple[float, float]]) -> np.ndarray:
        c, s = math.cos(angle), math.sin(angle)
        pts = [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]
        return np.array([[int(round(px)), int(round(py))] for px, py in pts], np.int32)

    if shape == "disc":
        cv2.circle(mask, centre, int(r), 255, -1, cv2.LINE_AA)
    elif shape == "ring":
        cv2.circle(mask, centre, int(r), 255, max(6, int(r * 0.35)), cv2.LINE_AA)
    elif shape == "square":
        a = r * 0.85
        cv2.fillPoly(mask, [poly([(-a, -a), (a, -a), (a, a), (-a, a)])], 255, cv2.LINE_AA)
    elif shape == "triangle":
        pts = [(r * math.cos(t), r * math.sin(t)) for t in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        cv2.fillPoly(mask, [poly(pts)], 255, cv2.LINE_AA)
    elif shape == "cross":
        w = r * 0.32
        cv2.fillPoly(mask, [poly([(-r, -w), (r, -w), (r, w), (-r, w)])], 255, cv2.LINE_AA)
        cv2.fillPoly(mask, [poly([(-w, -r), (w, -r), (w, r), (-w, r)])], 255, cv2.LINE_AA)
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            t = -math.pi / 2 + k * math.pi / 5
            pts.append((rad * math.cos(t), rad * math.sin(t)))
        cv2.fillPoly(mask, [poly(pts)], 255, cv2.LINE_AA)
    else:  # pragma: no cover - CLASS_SPECS is fixed
        raise ValueError(shape)
    return mask


_GRID: tuple[np.ndarray, np.ndarray] | None = None


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinate grids (computed once per process)."""
    global _GRID
    if _GRID is None:
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        _GRID = (yy, xx)
    return _GRID


def _texture(kind: str, colour: tuple[int, int, int], period: int, phase: float, angle: float) -> np.ndarray:
    """A full-frame uint8 BGR texture in the object colour (solid, stripes or checkers)."""
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    img[:] = colour
    if kind == "solid":
        return img
    yy, xx = _grid()
    u = xx * math.cos(angle) + yy * math.sin(angle) + phase
    if kind == "stripes":
        dark = (np.floor(u / period) % 2) == 1
    else:  # checkers
        v = -xx * math.sin(angle) + yy * math.cos(angle) + phase
        dark = ((np.floor(u / period) + np.floor(v / period)) % 2) == 1
    img[dark] //= 4
    return img


def _reflect(x: float, lo: float, hi: float) -> float:
    """Fold x into [lo, hi] like a ball bouncing between two walls."""
    span = hi - lo
    m = (x - lo) % (2 * span)
    return lo + (m if m <= span else 2 * span - m)


def _render_video(path: Path, class_index: int, num_frames: int, rng: np.random.Generator) -> None:
    """Write one clip of class `class_index` to `path` (atomically), with random per-video variation."""
    import cv2

    _name, shape, hue, tex = CLASS_SPECS[class_index]
    # Per-video constants.
    bg_base = rng.integers(20, 120, size=3).astype(np.float32)  # dull, low-saturation-ish background
    bg_grad = rng.uniform(-40, 40, size=3).astype(np.float32)
    obj_colour = _colour(rng, hue)
    r0 = float(rng.uniform(38, 62))
    cx, cy = float(rng.uniform(110, 210)), float(rng.uniform(85, 155))
    speed = float(rng.uniform(0.5, 2.0))
    heading = float(rng.uniform(0, 2 * math.pi))
    vx, vy = speed * math.cos(heading), speed * math.sin(heading)
    angle0, spin = float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(-0.04, 0.04))
    pulse_amp, pulse_freq = float(rng.uniform(0.0, 0.12)), float(rng.uniform(0.1, 0.3))
    period, tex_angle = int(rng.integers(8, 14)), float(rng.uniform(0, math.pi))
    noise_sigma = float(rng.uniform(4, 14))
    # A few distractor blobs in random (often unrelated) colours, drifting independently.
    n_blobs = int(rng.integers(0, 4))
    blobs = [
        (
            float(rng.uniform(0, WIDTH)),
            float(rng.uniform(0, HEIGHT)),
            float(rng.uniform(6, 16)),
            tuple(int(c) for c in rng.integers(40, 256, size=3)),
            float(rng.uniform(-1.5, 1.5)),
            float(rng.uniform(-1.5, 1.5)),
        )
        for _ in range(n_blobs)
    ]
    xs = np.linspace(-1.0, 1.0, WIDTH, dtype=np.float32)[None, :, None]
    background = np.clip(bg_base[None, None, :] + xs * bg_grad[None, None, :], 0, 255)
    background = np.broadcast_to(background, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    # One noise field per video; each frame takes a randomly shifted window of it (much cheaper than fresh
    # Gaussian noise per frame, and still different in every frame).
    pad = 16
    noise = rng.normal(0.0, noise_sigma, size=(HEIGHT + pad, WIDTH + pad, 3)).astype(np.int16)
    if tex == "solid":
        texture = _texture(tex, obj_colour, period, 0.0, tex_angle)

    with atomic_path(path) as tmp:
        # cv2 picks the container from the extension, so give the temporary file an .avi name.
        tmp_avi = tmp.with_suffix(".avi")
        writer = cv2.VideoWriter(str(tmp_avi), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
        if not writer.isOpened():
            raise TsnError(f"cannot write {path}: OpenCV has no MJPG/AVI writer")
        try:
            for t in range(num_frames):
                frame = background.copy()
                for bx, by, br, bc, bvx, bvy in blobs:
                    cv2.circle(frame, (int(bx + bvx * t) % WIDTH, int(by + bvy * t) % HEIGHT), int(br), bc, -1)
                # Bounce the object inside the frame so it never leaves the centre crop region entirely.
                px = _reflect(cx + vx * t, 70, 250)
                py = _reflect(cy + vy * t, 65, 175)
                r = r0 * (1.0 + pulse_amp * math.sin(pulse_freq * t))
                inside = _shape_mask(shape, px, py, r, angle0 + spin * t) > 127
                if tex != "solid":
                    texture = _texture(tex, obj_colour, period, phase=t * 0.7, angle=tex_angle)
                frame[inside] = texture[inside]
                ox, oy = int(rng.integers(0, pad)), int(rng.integers(0, pad))
                noisy = frame.astype(np.int16) + noise[oy : oy + HEIGHT, ox : ox + WIDTH]
                writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
        except BaseException:
            writer.release()
            tmp_avi.unlink(missing_ok=True)
            raise
        writer.release()
        tmp_avi.replace(tmp)


def _crlf(lines: list[str]) -> bytes:
    """Join lines with CRLF endings, as in the official UCF101 split files."""
    return "".join(line + "\r\n" for line in lines).encode("ascii")


def _previous_demo(out: Path) -> dict | None:
    """The settings of the demo already in `out` ({} for one written before the marker existed), else None."""
    try:
        meta = json.loads((out / MARKER).read_text(encoding="utf-8"))
        if isinstance(meta, dict):
            return meta
    except (OSError, ValueError):
        pass
    # an older demo: example.avi and a classInd.txt naming only demo classes
    try:
        lines = (out / "ucfTrainTestlist" / "classInd.txt").read_text().splitlines()
        names = [ln.split()[1] for ln in lines if ln.strip()]
    except (OSError, IndexError):
        return None
    known = {spec[0] for spec in CLASS_SPECS}
    return {} if (out / "example.avi").is_file() and names and set(names) <= known else None


def _demo_files(out: Path) -> list[Path]:
    """What a demo (and `tsn prepare ucf101` on it) wrote into `out`."""
    try:
        entries = list(out.iterdir())
    except OSError:
        return []
    return sorted(p for p in entries if p.name in _DEMO_ENTRIES or _DEMO_LIST_RE.match(p.name))


def _describe(meta: dict) -> str:
    what = "an unfinished demo dataset" if meta.get("complete") is False else "a demo dataset"
    if not meta:
        return what
    return (
        f"{what} ({meta.get('num_classes')} classes, {meta.get('videos_per_class')} videos per class, "
        f"{meta.get('frames')} frames, seed {meta.get('seed')})"
    )


def _claim_folder(out: Path, settings: dict, overwrite: bool) -> None:
    """Make sure the demo may be written into `out` (an unfinished demo with the same settings is resumed).

    New or empty folder: fine. A previous demo: refused (TsnError, exit 2) unless `overwrite`, which removes it
    first, or it is an unfinished one with the same settings (then resumed). Any other non-empty folder: refused.
    """
    try:
        entries = [p.name for p in out.iterdir() if p.name != LOCK_NAME] if out.is_dir() else []
    except OSError as exc:
        raise TsnError(f"cannot read folder {out}: {exc.strerror or exc}") from exc
    if not entries:
        return
    prev = _previous_demo(out)
    if prev is None:
        shown = ", ".join(sorted(entries)[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise TsnError(f"{out} is not empty ({shown}) and holds no demo; pick a new or empty folder")
    if prev.get("complete") is False and {k: prev.get(k) for k in settings} == settings and not overwrite:
        return
    if not overwrite:
        raise TsnError(
            f"{out} already holds {_describe(prev)}; use it as it is, pick another folder, "
            "or rebuild it with --overwrite"
        )
    for p in _demo_files(out):
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError as exc:
            raise TsnError(f"--overwrite: cannot remove {p}: {exc.strerror or exc}") from exc


def make_demo(
    out_dir: str | Path,
    num_classes: int = 6,
    videos_per_class: int = 16,
    frames: int = 32,
    seed: int = 0,
    progress=None,
    overwrite: bool = False,
    wait: bool = False,
    on_wait=None,
) -> dict[str, Any]:
    """Write the synthetic UCF101-layout demo dataset into `out_dir` and return a summary dict.

    `videos_per_class` is rounded up to whole groups of 4 clips (gXX_c01..c04); group g01 is the test set of
    split 1 (g02 of split 2, g03 of split 3), so the default 16 gives 12 train + 4 test clips per class and
    split. `frames` is the length of each clip (25 fps). `progress(done, total)` is called after each video.
    An interrupted run resumes (its complete videos are kept); files are written atomically. A folder holding
    anything else is refused, a previous demo too unless `overwrite` (see the module docstring). `out_dir` is locked
    for the run as `tsn prepare ucf101` locks it (`wait`, `on_wait`: see `PrepareOptions`).

    Returns ``{"root", "video_root", "split_dir", "classes", "splits": {n: {"train": k, "test": k}},
    "videos", "frames", "example", "example_class"}``.
    """
    if not 2 <= num_classes <= MAX_CLASSES:
        raise TsnError(f"--num-classes must be between 2 and {MAX_CLASSES}, got {num_classes}")
    if videos_per_class < 2 * CLIPS_PER_GROUP:
        raise TsnError(f"--videos-per-class must be at least {2 * CLIPS_PER_GROUP}, got {videos_per_class}")
    if frames < 4:
        raise TsnError(f"--frames must be at least 4, got {frames}")
    out = Path(out_dir)
    video_root = out / "UCF-101"
    split_dir = out / "ucfTrainTestlist"
    groups = math.ceil(videos_per_class / CLIPS_PER_GROUP)
    classes = [spec[0] for spec in CLASS_SPECS[:num_classes]]
    n_splits = min(3, groups - 1)
    settings = {"num_classes": num_classes, "videos_per_class": videos_per_class, "frames": frames, "seed": seed}
    with exclusive_lock(out, what="tsn prepare", wait=wait, on_wait=on_wait, inside=True):
        _claim_folder(out, settings, overwrite)
        atomic_write_text(out / MARKER, json.dumps({"format": "tsn-demo/1", **settings, "complete": False}, indent=2))

        # One child seed per video, derived from (seed, class, group, clip): any video can be regenerated alone.
        jobs: list[tuple[Path, int, np.random.Generator]] = []
        for ci, name in enumerate(classes):
            for g in range(1, groups + 1):
                for c in range(1, CLIPS_PER_GROUP + 1):
                    rel = f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
                    jobs.append((video_root / rel, ci, np.random.default_rng([seed, ci, g, c])))
        example_class = int(np.random.default_rng([seed, 999]).integers(num_classes))
        jobs.append((out / "example.avi", example_class, np.random.default_rng([seed, 999, 1])))

        for i, (path, ci, rng) in enumerate(jobs):
            if not (path.is_file() and path.stat().st_size > 0):
                _render_video(path, ci, frames, rng)
            if progress is not None:
                progress(i + 1, len(jobs))

        atomic_write_bytes(split_dir / "classInd.txt", _crlf([f"{i + 1} {name}" for i, name in enumerate(classes)]))
        splits: dict[int, dict[str, int]] = {}
        for n in range(1, n_splits + 1):
            train, test = [], []
            for ci, name in enumerate(classes):
                for g in range(1, groups + 1):
                    for c in range(1, CLIPS_PER_GROUP + 1):
                        rel = f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
                        if g == n:
                            test.append(rel)
                        else:
                            train.append(f"{rel} {ci + 1}")
            atomic_write_bytes(split_dir / f"trainlist{n:02d}.txt", _crlf(train))
            atomic_write_bytes(split_dir / f"testlist{n:02d}.txt", _crlf(test))
            splits[n] = {"train": len(train), "test": len(test)}
        atomic_write_text(out / MARKER, json.dumps({"format": "tsn-demo/1", **settings, "complete": True}, indent=2))

    return {
        "root": str(out.resolve()),
        "video_root": str(video_root.resolve()),
        "split_dir": str(split_dir.resolve()),
        "classes": classes,
        "splits": splits,
        "videos": len(jobs) - 1,
        "frames": frames,
        "example": str((out / "example.avi").resolve()),
        "example_class": classes[example_class],
    }

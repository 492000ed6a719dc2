"""`tsn predict --save-video OUT.mp4`: the input video with the predicted label and score drawn on every frame.

Each frame gets a dark banner at the top left with a colour swatch (one colour per class id, `PALETTE`) and
"label score". For a timeline the label is that of the window the frame falls in (`Timeline.own_bounds`), and
frames outside every segment (below --threshold) show the window's top class in grey. The file is written
beside the target under a temporary name and renamed when complete (a kill leaves no half video).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from tsn_cli.errors import ConfigError, DecodeError, TsnError

# BGR colours of the class swatch (tab10), class id modulo 10.
PALETTE = [
    (180, 119, 31),
    (14, 127, 255),
    (44, 160, 44),
    (40, 39, 214),
    (189, 103, 148),
    (75, 86, 140),
    (194, 119, 227),
    (127, 127, 127),
    (34, 189, 188),
    (207, 190, 23),
]
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def check_target(path: Path | str) -> Path:
    """The --save-video target, refused early when its extension has no writer here."""
    p = Path(path)
    if p.suffix.lower() not in FOURCC:
        raise ConfigError(f"--save-video: {p} must end in one of {', '.join(sorted(FOURCC))}")
    return p


def _frames_bgr(path: str) -> tuple[Iterator[np.ndarray], float]:
    """Every frame of a video (OpenCV, in order) or frame folder, BGR; and the frame rate (25 if unknown)."""
    from tsn_cli.data.probe import cv2_quiet, open_capture
    from tsn_cli.data.video import count_frames, decode_image_file

    cv2 = cv2_quiet()
    if os.path.isdir(path):
        n = count_frames(path)

        def folder():
            for i in range(n):
                rgb = decode_image_file(os.path.join(path, f"img_{i + 1:05}.jpg"), path)
                yield cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

        return folder(), 25.0
    cap = open_capture(path)
    if not cap.isOpened():
        raise DecodeError(path, "cannot open for --save-video")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)

    def video():
        try:
            while True:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    return
                yield bgr
        finally:
            cap.release()

    return video(), fps if 0 < fps < 1000 else 25.0


def draw_label(bgr: np.ndarray, class_id: int, text: str, dim: bool = False) -> np.ndarray:
    """Draw the banner (swatch + text) on a copy-free frame in place; returns it."""
    import cv2

    h, w = bgr.shape[:2]
    scale = max(0.35, min(1.2, w / 640))
    thick = 1 if scale < 0.8 else 2
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(3, int(6 * scale))
    sw = th + base  # the swatch is a square as tall as the text
    x1, y1 = min(w, 3 * pad + sw + tw), min(h, 2 * pad + th + base)
    bgr[:y1, :x1] = (bgr[:y1, :x1] * 0.25).astype(np.uint8)
    colour = (128, 128, 128) if dim else PALETTE[class_id % len(PALETTE)]
    cv2.rectangle(bgr, (pad, pad), (pad + sw, pad + sw), colour, -1)
    cv2.putText(
        bgr,
        text,
        (2 * pad + sw, pad + th),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (160, 160, 160) if dim else (255, 255, 255),
        thick,
        cv2.LINE_AA,
    )
    return bgr


def save_video(path: str, out: Path | str, label_of: Callable[[int], tuple[int, str, float, bool]]) -> int:
    """Write `path`'s frames to `out` with `label_of(frame_index) -> (class_id, label, score, dim)` drawn on
    each; returns the number of frames written."""
    import cv2

    from tsn_cli.ui import plain

    out = check_target(out)
    frames, fps = _frames_bgr(path)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")  # the writer picks the container by extension
    writer: Optional[object] = None
    n = 0
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for bgr in frames:
            if writer is None:
                h, w = bgr.shape[:2]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC[out.suffix.lower()]), fps, (w, h))
                if not writer.isOpened():
                    raise TsnError(f"cannot write {out}: no {FOURCC[out.suffix.lower()]} encoder for {out.suffix}")
            c, label, score, dim = label_of(n)
            writer.write(draw_label(np.ascontiguousarray(bgr), c, f"{plain(label)} {score:.2f}", dim))
            n += 1
        if writer is None:
            raise DecodeError(path, "no frame decodes for --save-video")
        writer.release()
        writer = None
        os.replace(tmp, out)
    except OSError as exc:
        raise TsnError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        if writer is not None:
            writer.release()
        if tmp.exists():
            tmp.unlink()
    return n


def timeline_labeler(tl) -> Callable[[int], tuple[int, str, float, bool]]:
    """Per frame: the top class of the window whose own stretch holds it (dim when below the threshold)."""
    _, hi = tl.own_bounds()
    top = tl.probs.argmax(axis=1)

    def label_of(f: int):
        w = min(int(np.searchsorted(hi, f, side="right")), len(top) - 1)
        c = int(top[w])
        p = float(tl.probs[w, c])
        return c, tl.label(c), p, p < tl.threshold

    return label_of

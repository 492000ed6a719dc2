"""Small synthetic videos, frame folders and lists for the data tests (and the loader benchmark).

Every frame encodes its own index, so tests can tell which frames were decoded: frame ``i`` has a white bar
``i+1`` pixels wide at the left, and its blue channel in the lower-right quarter is ``(i * 8) % 256``.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from tsn_cli.constants import FRAME_TEMPLATE


def frame_image(i: int, width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """RGB uint8 frame ``i``: smooth random texture (stable per seed), index bar, index colour patch."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
    img = cv2.resize(base, (width, height), interpolation=cv2.INTER_LINEAR)
    img = np.roll(img, i, axis=1)
    img[:, : min(width, i + 1)] = 255
    img[height // 2 :, width // 2 :, 2] = (i * 8) % 256
    return np.ascontiguousarray(img)


def write_video(path, num_frames: int = 12, width: int = 64, height: int = 48, fourcc: str = "MJPG",
                fps: int = 25, seed: int = 0) -> str:
    """Write an AVI/MP4 with cv2 (MJPG/XVID/mp4v work here; avc1 does not)."""
    path = str(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert vw.isOpened(), f"cannot write {path} with {fourcc}"
    for i in range(num_frames):
        vw.write(cv2.cvtColor(frame_image(i, width, height, seed), cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def write_frames(folder, num_frames: int = 12, width: int = 64, height: int = 48, template: str = FRAME_TEMPLATE,
                 seed: int = 0, quality: int = 95) -> str:
    """Write ``template.format(1..num_frames)`` JPEGs with cv2 (as PaddleVideo's extractor does)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        bgr = cv2.cvtColor(frame_image(i, width, height, seed), cv2.COLOR_RGB2BGR)
        ok = cv2.imwrite(str(folder / template.format(i + 1)), bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
    return str(folder)


def truncate(path, fraction: float = 0.5) -> str:
    """Cut a file to ``fraction`` of its size (simulates an interrupted download)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
    return str(path)


def make_dataset(root, n_videos: int = 6, num_frames: int = 12, width: int = 64, height: int = 48,
                 num_classes: int = 3, fourcc: str = "MJPG", frames: bool = True) -> dict:
    """A tiny dataset: ``root/videos/cXX_vYY.avi`` (+ frame folders) and lists ``videos.txt`` / ``frames.txt``
    (relative paths). Returns the paths."""
    root = Path(root)
    vids, frs = [], []
    for k in range(n_videos):
        label = k % num_classes
        name = f"c{label:02d}_v{k:02d}"
        write_video(root / "videos" / f"{name}.avi", num_frames, width, height, fourcc, seed=k)
        vids.append(f"videos/{name}.avi {label}")
        if frames:
            write_frames(root / "frames" / name, num_frames, width, height, seed=k)
            frs.append(f"frames/{name} {num_frames} {label}")
    (root / "videos.txt").write_text("\n".join(vids) + "\n")
    out = {"root": str(root), "videos": str(root / "videos.txt"), "n": n_videos}
    if frames:
        (root / "frames.txt").write_text("\n".join(frs) + "\n")
        out["frames"] = str(root / "frames.txt")
    return out


def environ_workers_ok() -> bool:
    """Multi-process loading needs /dev/shm (Paddle's shared-memory batches)."""
    return os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)

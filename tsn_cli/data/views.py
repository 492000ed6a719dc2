"""Test-time views: the ONE code path that eval and predict (and the eval-mode dataset) use to turn a video
into ``seg_num x crops`` normalised frames.

``clip = TestTransform(crops)(source.get(segment_indices(L, seg_num, train=False)))`` -- segment centres,
Scale to the short side, then CenterCrop (1) / three_crop (3) / TenCrop (10), normalised, crop-major:
``[crops*seg_num, 3, t, t]``. The model averages over all views, so the order only matters for parity with
PaddleVideo's TenCrop (which is crop-major as well).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tsn_cli.constants import FRAME_TEMPLATE, IMAGENET_MEAN, IMAGENET_STD
from tsn_cli.data.sampling import segment_indices
from tsn_cli.data.transforms import TestTransform
from tsn_cli.data.video import FrameCountChanged, FrameSource, open_source


def load_clip(
    source: FrameSource, seg_num: int, transform, train: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Sample ``seg_num`` frames of ``source`` (train: random per segment; else centres), decode only those,
    and apply ``transform`` (``transform(frames, rng)``). Shared by the dataset and `test_clip`."""
    idx = segment_indices(source.num_frames, seg_num, train, rng)
    try:
        frames = source.get(idx)
    except FrameCountChanged:
        # a verified video turned out shorter on its first read: sample over the frames that decode, as
        # opening it with a separate reach check would have
        idx = segment_indices(source.num_frames, seg_num, train, rng)
        frames = source.get(idx)
    return transform(frames, rng)


def test_clip(
    source,
    seg_num: int = 25,
    crops: int = 10,
    short_side: int = 256,
    target_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    fmt: str | None = None,
    frame_template: str = FRAME_TEMPLATE,
) -> np.ndarray:
    """Test-time views of one video: float32 ``[crops*seg_num, 3, target_size, target_size]``.

    ``source`` is a `FrameSource`, a `VideoRecord` or a path (a folder is read as a frame folder; a video is
    opened with ``verify=True``, as predict and eval do). Raises `DecodeError` for unreadable input.
    """
    transform = TestTransform(short_side=short_side, target_size=target_size, crops=crops, mean=mean, std=std)
    if isinstance(source, FrameSource):
        return load_clip(source, seg_num, transform, train=False)
    with open_source(source, fmt, frame_template, verify=True) as src:
        return load_clip(src, seg_num, transform, train=False)


test_clip.__test__ = False  # keep pytest from collecting it when imported into a test module

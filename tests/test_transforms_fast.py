"""The fast `TestTransform` path (`build_test_views`) against the plain composition of the public functions
(``normalize(center_crop | three_crop | ten_crop(scale_short_side(x)))``): exact equality, every crop mode,
frame sizes that need scaling, ones that are already at the short side, portrait frames and odd sizes."""

from __future__ import annotations

import numpy as np
import pytest

from tsn_cli.data import transforms as T


def slow_views(frames, short, target, crops, mean=T.IMAGENET_MEAN, std=T.IMAGENET_STD):
    """The straightforward composition the fast path must reproduce bit for bit."""
    x = T.scale_short_side(frames, short)
    if crops == 1:
        x = T.center_crop(x, target)
    elif crops == 3:
        x = T.three_crop(x, target)
    else:
        x = T.ten_crop(x, target)
    return T.normalize(x, mean, std)


def rand_frames(t, h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("crops", [1, 3, 10])
@pytest.mark.parametrize(
    "t,h,w,short,target",
    [
        (3, 240, 320, 256, 224),  # upscaled landscape
        (2, 272, 640, 256, 224),  # bikes.mp4's size
        (2, 256, 341, 256, 224),  # already at the short side: no resize
        (3, 333, 250, 256, 224),  # portrait, crops along the height
        (4, 57, 91, 48, 37),  # odd sizes, odd target
        (2, 64, 64, 64, 64),  # crop == frame: every box is the whole frame
    ],
)
def test_fast_equals_composition(crops, t, h, w, short, target):
    frames = rand_frames(t, h, w, seed=crops * 1000 + h + w)
    got = T.TestTransform(short_side=short, target_size=target, crops=crops)(frames)
    want = slow_views(frames, short, target, crops)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == (crops * t, 3, target, target) == want.shape
    assert np.array_equal(got, want)


def test_fast_uses_given_mean_std():
    frames = rand_frames(2, 100, 150, seed=7)
    mean, std = (0.5, 0.25, 0.1), (0.3, 0.2, 0.9)
    got = T.build_test_views(frames, 96, 80, 10, mean, std)
    assert np.array_equal(got, slow_views(frames, 96, 80, 10, mean, std))


def test_fast_flipped_views_are_mirrors():
    frames = rand_frames(2, 120, 200, seed=3)
    v = T.build_test_views(frames, 112, 96, 10)
    for k in range(5):
        plain, flipped = v[2 * k * 2:(2 * k + 1) * 2], v[(2 * k + 1) * 2:(2 * k + 2) * 2]
        assert np.array_equal(flipped, plain[..., ::-1])


def test_fast_input_is_not_modified_and_non_contiguous_input_works():
    base = rand_frames(3, 130, 190, seed=5)
    frames = base[:, 1:-1, 2:-2]  # a strided view
    keep = frames.copy()
    got = T.TestTransform(short_side=112, target_size=100, crops=10)(frames)
    assert np.array_equal(frames, keep)
    assert np.array_equal(got, slow_views(np.ascontiguousarray(frames), 112, 100, 10))


def test_fast_rejects_bad_input():
    with pytest.raises(ValueError):
        T.build_test_views(np.zeros((2, 10, 10, 3), np.float32), 8, 8, 1)
    with pytest.raises(ValueError):
        T.build_test_views(np.zeros((2, 100, 100, 3), np.uint8), 100, 120, 10)  # crop larger than the frame
    with pytest.raises(ValueError):
        T.build_test_views(np.zeros((2, 100, 100, 3), np.uint8), 100, 50, 5)

"""TSN segment sampling against hand-computed indices (PaddleVideo select_left branch, short-video fix)."""

from __future__ import annotations

import numpy as np
import pytest

from tsn_cli.data.sampling import segment_indices


@pytest.mark.parametrize(
    "L,S,expected",
    [
        (300, 3, [50, 150, 250]),  # spec example
        (300, 25, [6 + 12 * i for i in range(25)]),  # spec example: 6, 18, ..., 294
        (10, 3, [1, 5, 8]),  # 10/3 = 3.33: int(1.67), int(5.0), int(8.33)
        (7, 3, [1, 3, 5]),  # 2.33: int(1.17), int(3.5), int(5.83)
        (100, 7, [7, 21, 35, 50, 64, 78, 92]),  # 14.2857: int(7.14), int(21.43), ..., int(92.86)
        (4, 3, [0, 2, 3]),  # 1.33: int(0.67), int(2.0), int(3.33)
    ],
)
def test_test_mode_segment_centres(L, S, expected):
    got = segment_indices(L, S, train=False)
    assert got.dtype == np.int64
    assert got.tolist() == expected


@pytest.mark.parametrize(
    "L,S,expected",
    [
        (5, 5, [0, 1, 2, 3, 4]),  # L == S: every frame once (PaddleVideo: all zeros)
        (3, 6, [0, 0, 1, 1, 2, 2]),  # step 0.5: int(0.25 + 0.5 i)
        (2, 5, [0, 0, 1, 1, 1]),  # step 0.4: int(0.2), int(0.6), int(1.0), int(1.4), int(1.8)
        (1, 3, [0, 0, 0]),
        (3, 25, [int(0.06 + 0.12 * i) for i in range(25)]),
    ],
)
def test_test_mode_short_videos_repeat_frames(L, S, expected):
    got = segment_indices(L, S, train=False)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert got.min() >= 0 and got.max() < L


def test_train_fixed_seed_hand_computed():
    # L=300, S=3: avg = 100, idx_i = 100 i + randint(100); with default_rng(7) the draws are fixed.
    draws = np.random.default_rng(7).integers(0, 100, size=3)
    got = segment_indices(300, 3, train=True, rng=np.random.default_rng(7))
    assert got.tolist() == [int(draws[0]), 100 + int(draws[1]), 200 + int(draws[2])]
    # Concrete values, so a change in the formula or rng use is caught:
    assert got.tolist() == [int(v) for v in np.array([0, 100, 200]) + draws]
    again = segment_indices(300, 3, train=True, rng=np.random.default_rng(7))
    assert again.tolist() == got.tolist()


def test_train_indices_stay_in_their_segment():
    rng = np.random.default_rng(0)
    for L, S in [(10, 3), (301, 7), (8, 8), (25, 25), (9, 4)]:
        avg = L // S
        for _ in range(50):
            idx = segment_indices(L, S, train=True, rng=rng)
            assert idx.dtype == np.int64
            for i, v in enumerate(idx.tolist()):
                assert i * avg <= v < (i + 1) * avg


def test_train_l_equals_s_takes_every_frame():
    assert segment_indices(5, 5, train=True, rng=np.random.default_rng(1)).tolist() == [0, 1, 2, 3, 4]


def test_train_fewer_frames_than_segments():
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(200):
        idx = segment_indices(3, 7, train=True, rng=rng)
        assert idx.dtype == np.int64 and len(idx) == 7
        assert np.all(np.diff(idx) >= 0)
        for i, v in enumerate(idx.tolist()):
            # segment i is [i*3/7, (i+1)*3/7): the frame overlapping a random point of it
            assert int(i * 3 / 7) <= v <= min(2, int((i + 1) * 3 / 7))
        seen.update(idx.tolist())
    assert seen == {0, 1, 2}
    # Hand-computed for a fixed draw: u = (i + r_i) * L / S, idx = int(u)
    r = np.random.default_rng(11).random(4)
    exp = [int((i + r[i]) * 2 / 4) for i in range(4)]
    assert segment_indices(2, 4, train=True, rng=np.random.default_rng(11)).tolist() == exp


def test_errors():
    with pytest.raises(ValueError):
        segment_indices(0, 3, train=False)
    with pytest.raises(ValueError):
        segment_indices(10, 0, train=False)
    with pytest.raises(ValueError):
        segment_indices(10, 3, train=True, rng=None)

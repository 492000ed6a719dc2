"""TSN segment sampling: which frames of a video make a clip.

This is PaddleVideo's ``Sampler(select_left=True, seg_len=1)`` -- the branch its TSN configs use -- with the
short-video bug fixed. With ``L`` frames and ``S`` segments, ``avg = int(L / S)``:

* train, ``L >= S``: ``idx_i = i * avg + randint(avg)`` -- one random frame inside each of ``S`` equal
  segments of ``avg`` frames (the trailing ``L - S*avg`` frames are never used, as in PaddleVideo).
* test/val, ``L > S``: ``idx_i = int(L/S/2 + (L/S) * i)`` in float arithmetic, truncated: segment centres.

PaddleVideo returns an all-zero *float* array when ``L < S`` (train) or ``L <= S`` (test), which makes the
frame file name ``img_001.0.jpg`` and the sample fail. Here instead, always int64:

* test/val, ``L <= S``: the same centre formula, still on floats. For ``L == S`` it gives ``0..S-1``
  (every frame once); for ``L < S`` it spreads the frames evenly, each repeated ``S/L`` times
  (e.g. ``L=3, S=6 -> 0 0 1 1 2 2``).
* train, ``L < S``: segment ``i`` is the float interval ``[i*L/S, (i+1)*L/S)``; a uniform point ``u`` in it
  is drawn and ``int(u)`` taken, so each segment gets a random frame that overlaps it, frames repeat, and
  the result is non-decreasing. (``L == S`` takes the PaddleVideo branch: ``avg = 1`` gives ``0..S-1``.)

Indices are 0-based frame positions; frame folders name files 1-based, so the reader adds 1
(``img_{idx+1:05}.jpg``).
"""

from __future__ import annotations

import numpy as np


def segment_indices(num_frames: int, seg_num: int, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
    """0-based int64 frame indices, one per segment (see the module docstring for the exact formulas).

    ``rng`` (a numpy Generator) is needed only for ``train=True``. Raises ValueError for ``num_frames < 1``
    or ``seg_num < 1``.
    """
    L = int(num_frames)
    S = int(seg_num)
    if L < 1:
        raise ValueError(f"cannot sample from {L} frames")
    if S < 1:
        raise ValueError(f"seg_num must be >= 1, got {S}")
    if train:
        if rng is None:
            raise ValueError("training sampling needs an rng")
        avg = L // S  # == int(L / S) for positive ints
        if avg > 0:
            return np.arange(S, dtype=np.int64) * avg + rng.integers(0, avg, size=S, dtype=np.int64)
        # L < S: a uniform point inside each float segment, truncated.
        u = (np.arange(S, dtype=np.float64) + rng.random(S)) * (L / S)
        return np.minimum(u.astype(np.int64), L - 1)
    step = L / S
    # Same expression and evaluation order as PaddleVideo: int(step / 2.0 + step * i).
    idx = np.array([int(step / 2.0 + step * i) for i in range(S)], dtype=np.int64)
    return np.minimum(idx, L - 1)

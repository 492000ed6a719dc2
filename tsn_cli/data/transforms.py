"""Clip transforms with PaddleVideo's exact arithmetic, on numpy arrays (uint8 RGB ``[T, H, W, 3]``).

PaddleVideo's TSN pipeline works on PIL images but does its resizing with ``cv2.resize(np.asarray(img),
..., INTER_LINEAR)``; the only PIL-side arithmetic is ``Image.crop`` with a (possibly float) box, which
Pillow rounds coordinate by coordinate with Python's ``round()`` (half to even: 58.5 -> 58, 59.5 -> 60)
before cutting (``Image._crop``: ``map(int, map(round, box))``). Reproducing both on arrays gives
bit-identical pixels without any PIL round trip (tests compare with a PIL-based reference).

Transforms, with the TSN config's settings:

* `scale_short_side` -- ``Scale(short_size, fixed_ratio=False, do_round=True, backend='cv2')``: frames whose
  short side already equals ``short_side`` pass unchanged; otherwise the short side becomes ``short_side``
  and the long side ``int(long * short_side / short + 0.5)``.
* `multi_scale_crop` -- ``MultiScaleCrop(allow_duplication=True, more_fix_crop=False, max_distort=1)``: crop
  sizes ``int(min(w, h) * s)`` for the scales, sizes within 2 px of the target (``|x - t| < 3``) snap to
  the target; a (w, h) pair with ``|i - j| <= 1`` and one of 5 float offsets (corners and centre, steps
  ``(W - cw) / 4``) are drawn once per clip; the PIL-rounded box is cut from every frame and resized to
  ``target x target``.
* `random_flip` -- one draw per clip, horizontal flip of all frames with probability p.
* `center_crop` -- ``CenterCrop(do_round=False)``: ``x1 = (w - t) // 2``, ``y1 = (h - t) // 2``.
* `three_crop` -- 3 crops along the long side (start, end, centre; the short side centred). When one side
  equals the target this is PaddleVideo's ``UniformCrop``; PaddleVideo has no 3-crop for a 256-short-side
  frame and a 224 target, so the centred short side is this tool's generalisation.
* `ten_crop` -- ``TenCrop``: integer steps ``(W - t) // 4``, offsets (0,0), (4ws,0), (0,4hs), (4ws,4hs),
  (2ws,2hs); output crop-major ``[crop0 x T, flip(crop0) x T, crop1 x T, ...]``.
* `normalize` -- ``(x / 255 - mean) / std`` in float32, the same operations and order as PaddleVideo's
  ``Normalization`` (done through a per-channel lookup table: bit-identical, faster), to ``[T, 3, H, W]``.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from tsn_cli.constants import CROP_SCALES, IMAGENET_MEAN, IMAGENET_STD


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", None)
        raise ValueError(f"expected uint8 frames [T,H,W,3], got {type(frames).__name__} {shape} {dtype}")


def pil_round_box(box: Sequence[float]) -> tuple[int, int, int, int]:
    """Round a crop box the way Pillow's ``Image.crop`` does: Python ``round()`` on each coordinate."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return x0, y0, x1, y1


def crop(frames: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """Cut ``box = (x0, y0, x1, y1)`` (floats allowed, rounded as PIL does) from every frame -> a view."""
    x0, y0, x1, y1 = pil_round_box(box)
    h, w = frames.shape[1:3]
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(f"crop box {(x0, y0, x1, y1)} outside a {w}x{h} frame")
    return frames[:, y0:y1, x0:x1]


def resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize every frame to ``width x height`` with cv2 INTER_LINEAR (what PaddleVideo's cv2 backend does)."""
    t = frames.shape[0]
    if frames.shape[1] == height and frames.shape[2] == width:
        return frames  # cv2.resize to the same size is an exact copy
    out = np.empty((t, height, width, 3), dtype=np.uint8)
    for i in range(t):
        # cv2 needs a contiguous source; crops are views.
        cv2.resize(np.ascontiguousarray(frames[i]), (width, height), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return out


# --------------------------------------------------------------------------------------------- Scale
def scale_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Output ``(width, height)`` of PaddleVideo's ``Scale(fixed_ratio=False, do_round=True)``."""
    w, h = int(width), int(height)
    if (w <= h and w == short_side) or (h <= w and h == short_side):
        return w, h
    if w <= h:
        sf = short_side / w
    else:
        sf = short_side / h
    return int(w * float(sf) + 0.5), int(h * float(sf) + 0.5)


def scale_short_side(frames: np.ndarray, short_side: int = 256) -> np.ndarray:
    """Resize so the short side is ``short_side`` keeping the aspect ratio (PaddleVideo ``Scale``, see module doc)."""
    _check_frames(frames)
    h, w = frames.shape[1:3]
    ow, oh = scale_size(w, h, short_side)
    return resize_frames(frames, ow, oh)


# ------------------------------------------------------------------------------------ MultiScaleCrop
def multi_scale_crop_candidates(
    width: int,
    height: int,
    target_size: int = 224,
    scales: Sequence[float] = CROP_SCALES,
    max_distort: int = 1,
) -> tuple[list[tuple[int, int]], list]:
    """All choices `multi_scale_crop` draws from for a ``width x height`` frame.

    Returns ``(pairs, offsets_for)`` where ``pairs`` lists the ``(crop_w, crop_h)`` candidates in
    PaddleVideo's order and ``offsets_for(pair)`` gives the 5 float ``(x, y)`` offsets for one pair
    (upper-left, upper-right, lower-left, lower-right, centre; duplicates kept).
    """
    base = min(width, height)
    sizes = [int(base * s) for s in scales]
    crop_h = [target_size if abs(x - target_size) < 3 else x for x in sizes]
    crop_w = [target_size if abs(x - target_size) < 3 else x for x in sizes]
    pairs = [(w, h) for i, h in enumerate(crop_h) for j, w in enumerate(crop_w) if abs(i - j) <= max_distort]

    def offsets_for(pair: tuple[int, int]) -> list[tuple[float, float]]:
        w_step = (width - pair[0]) / 4
        h_step = (height - pair[1]) / 4
        return [(0, 0), (4 * w_step, 0), (0, 4 * h_step), (4 * w_step, 4 * h_step), (2 * w_step, 2 * h_step)]

    return pairs, offsets_for


def multi_scale_crop_box(
    width: int,
    height: int,
    rng: np.random.Generator,
    target_size: int = 224,
    scales: Sequence[float] = CROP_SCALES,
    max_distort: int = 1,
) -> tuple[float, float, float, float]:
    """Draw one MultiScaleCrop box ``(x0, y0, x1, y1)`` (floats, before PIL rounding) for a clip."""
    pairs, offsets_for = multi_scale_crop_candidates(width, height, target_size, scales, max_distort)
    cw, ch = pairs[int(rng.integers(len(pairs)))]
    offsets = offsets_for((cw, ch))
    ox, oy = offsets[int(rng.integers(len(offsets)))]
    return ox, oy, ox + cw, oy + ch


def multi_scale_crop(
    frames: np.ndarray,
    rng: np.random.Generator,
    target_size: int = 224,
    scales: Sequence[float] = CROP_SCALES,
    max_distort: int = 1,
) -> np.ndarray:
    """PaddleVideo ``MultiScaleCrop`` (TSN settings): one random box for all frames, resized to the target."""
    _check_frames(frames)
    h, w = frames.shape[1:3]
    box = multi_scale_crop_box(w, h, rng, target_size, scales, max_distort)
    return resize_frames(crop(frames, box), target_size, target_size)


def random_flip(frames: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Flip every frame horizontally with probability ``p`` (one draw per clip, as PaddleVideo)."""
    if rng.random() < p:
        return frames[:, :, ::-1]
    return frames


# ------------------------------------------------------------------------------------- test crops
def center_crop_box(width: int, height: int, target_size: int = 224) -> tuple[int, int, int, int]:
    """PaddleVideo ``CenterCrop(do_round=False)`` box."""
    _check_fits(width, height, target_size)
    x1 = (width - target_size) // 2
    y1 = (height - target_size) // 2
    return x1, y1, x1 + target_size, y1 + target_size


def center_crop(frames: np.ndarray, target_size: int = 224) -> np.ndarray:
    """Centre ``target x target`` crop of every frame."""
    _check_frames(frames)
    h, w = frames.shape[1:3]
    return crop(frames, center_crop_box(w, h, target_size))


def three_crop_boxes(width: int, height: int, target_size: int = 224) -> list[tuple[int, int, int, int]]:
    """Boxes of `three_crop`: start, end, centre along the long side; the short side centred."""
    _check_fits(width, height, target_size)
    t = target_size
    if width >= height:
        step = (width - t) // 2
        y = (height - t) // 2
        offs = [(0, y), (2 * step, y), (step, y)]
    else:
        step = (height - t) // 2
        x = (width - t) // 2
        offs = [(x, 0), (x, 2 * step), (x, step)]
    return [(x, y, x + t, y + t) for x, y in offs]


def three_crop(frames: np.ndarray, target_size: int = 224) -> np.ndarray:
    """Three crops per frame, crop-major ``[crop0 x T, crop1 x T, crop2 x T]``."""
    _check_frames(frames)
    h, w = frames.shape[1:3]
    return np.concatenate([crop(frames, b) for b in three_crop_boxes(w, h, target_size)], axis=0)


def ten_crop_boxes(width: int, height: int, target_size: int = 224) -> list[tuple[int, int, int, int]]:
    """The 5 boxes of PaddleVideo ``TenCrop`` in its order (each is used plain, then flipped)."""
    _check_fits(width, height, target_size)
    t = target_size
    ws = (width - t) // 4
    hs = (height - t) // 4
    offs = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]
    return [(x, y, x + t, y + t) for x, y in offs]


def ten_crop(frames: np.ndarray, target_size: int = 224) -> np.ndarray:
    """PaddleVideo ``TenCrop``: ``[box0 x T, flip(box0) x T, box1 x T, flip(box1) x T, ...]`` (10*T frames)."""
    _check_frames(frames)
    h, w = frames.shape[1:3]
    parts = []
    for b in ten_crop_boxes(w, h, target_size):
        c = crop(frames, b)
        parts.append(c)
        parts.append(c[:, :, ::-1])
    return np.concatenate(parts, axis=0)


def _check_fits(width: int, height: int, target_size: int) -> None:
    if width < target_size or height < target_size:
        raise ValueError(f"frame {width}x{height} is smaller than the {target_size}x{target_size} crop")


# ---------------------------------------------------------------------------------- normalisation
_LUT_CACHE: dict[tuple, np.ndarray] = {}


def _lut(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    key = (tuple(float(m) for m in mean), tuple(float(s) for s in std))
    lut = _LUT_CACHE.get(key)
    if lut is None:
        # Same float32 operations as PaddleVideo: float32(x) / 255.0, -= float32 mean, /= float32 std.
        x = np.arange(256, dtype=np.float32).reshape(1, 256)
        m = np.asarray(key[0], dtype=np.float32).reshape(3, 1)
        s = np.asarray(key[1], dtype=np.float32).reshape(3, 1)
        lut = x / 255.0
        lut = lut - m
        lut = lut / s
        lut = np.ascontiguousarray(lut.astype(np.float32))
        _LUT_CACHE[key] = lut
    return lut


def normalize(
    frames: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` -> float32 ``[T, 3, H, W]`` = ``(x / 255 - mean) / std`` per channel."""
    _check_frames(frames)
    lut = _lut(mean, std)
    # Channel-first uint8 copy first (cheap), then one contiguous gather per channel.
    chw = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
    out = np.empty(chw.shape, dtype=np.float32)
    for c in range(3):
        out[:, c] = np.take(lut[c], chw[:, c])  # (np.take into a strided `out=` is several times slower)
    return out


# -------------------------------------------------------------------------------- composed transforms
class TrainTransform:
    """TSN training augmentation: Scale -> MultiScaleCrop -> RandomFlip -> Normalization.

    ``__call__(frames, rng)``: uint8 RGB ``[T, H, W, 3]`` -> float32 ``[T, 3, target, target]``. All randomness
    comes from ``rng`` (numpy Generator): crop pair, offset, then flip.
    """

    def __init__(
        self,
        short_side: int = 256,
        target_size: int = 224,
        scales: Sequence[float] = CROP_SCALES,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        flip_prob: float = 0.5,
        max_distort: int = 1,
    ):
        self.short_side = int(short_side)
        self.target_size = int(target_size)
        self.scales = tuple(float(s) for s in scales)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.flip_prob = float(flip_prob)
        self.max_distort = int(max_distort)
        self.views = 1

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one clip (see the class docstring)."""
        x = scale_short_side(frames, self.short_side)
        x = multi_scale_crop(x, rng, self.target_size, self.scales, self.max_distort)
        x = random_flip(x, rng, self.flip_prob)
        return normalize(x, self.mean, self.std)


class TestTransform:
    """Test-time views: Scale -> CenterCrop (crops=1) | three_crop (3) | TenCrop (10) -> Normalization.

    ``__call__(frames, rng=None)``: uint8 ``[T, H, W, 3]`` -> float32 ``[crops*T, 3, target, target]``,
    crop-major. ``rng`` is accepted and ignored so datasets can call both transforms the same way.
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        short_side: int = 256,
        target_size: int = 224,
        crops: int = 1,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        if crops not in (1, 3, 10):
            raise ValueError(f"crops must be 1, 3 or 10, got {crops}")
        self.short_side = int(short_side)
        self.target_size = int(target_size)
        self.crops = int(crops)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.views = self.crops

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Build the test views of one clip (see the class docstring).

        Same values as ``normalize(ten_crop(scale_short_side(frames)))`` (resp. centre / three crop), computed
        without the per-crop work: see `build_test_views`.
        """
        return build_test_views(frames, self.short_side, self.target_size, self.crops, self.mean, self.std)


def view_boxes(width: int, height: int, target_size: int, crops: int) -> list[tuple[tuple[int, int, int, int], bool]]:
    """The ``(box, flipped)`` views of `TestTransform` in output order for a scaled ``width x height`` frame."""
    if crops == 1:
        return [(center_crop_box(width, height, target_size), False)]
    if crops == 3:
        return [(b, False) for b in three_crop_boxes(width, height, target_size)]
    if crops == 10:
        return [(b, flip) for b in ten_crop_boxes(width, height, target_size) for flip in (False, True)]
    raise ValueError(f"crops must be 1, 3 or 10, got {crops}")


def _lut_planes(chw: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:
    """``out[i, c] = lut[c][chw[i, c]]`` plane by plane (contiguous uint8 ``[T, 3, h, w]`` -> float32).

    cv2.LUT is a pure table copy (the same float32 values as ``np.take``) but about 2.5x faster, and it
    writes into ``out`` without a temporary."""
    for i in range(chw.shape[0]):
        for c in range(3):
            cv2.LUT(chw[i, c], lut[c], dst=out[i, c])


def build_test_views(
    frames: np.ndarray,
    short_side: int = 256,
    target_size: int = 224,
    crops: int = 1,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """Fast `TestTransform`: uint8 ``[T, H, W, 3]`` -> float32 ``[crops*T, 3, t, t]``, crop-major.

    Bit-identical to normalising each (flipped) crop, because normalisation is a per-pixel table lookup that
    commutes with cropping and flipping. So: scale every frame (cv2, as `scale_short_side`), normalise
    only the union of the crop boxes once (cv2.LUT, uint8 -> float32), then fill the preallocated output by
    slicing the crops out of that (one copy each) and mirroring the flipped ones from the plain crop just
    written (cv2.flip per plane, several times faster than copying a reversed numpy slice). A single
    centre crop is looked up straight into the output.
    """
    _check_frames(frames)
    x = scale_short_side(frames, short_side)
    t_len, h, w = x.shape[:3]
    t = int(target_size)
    views = view_boxes(w, h, t, int(crops))
    lut = _lut(mean, std)
    out = np.empty((len(views) * t_len, 3, t, t), dtype=np.float32)
    ux0 = min(b[0] for b, _ in views)
    uy0 = min(b[1] for b, _ in views)
    ux1 = max(b[2] for b, _ in views)
    uy1 = max(b[3] for b, _ in views)
    # Channel-first uint8 copy of the union of the boxes (cheap) so each LUT call reads one contiguous plane.
    region = np.ascontiguousarray(x.transpose(0, 3, 1, 2)[:, :, uy0:uy1, ux0:ux1])
    if len(views) == 1:  # the centre crop is the union: look it up straight into the output
        _lut_planes(region, lut, out)
        return out
    norm = np.empty(region.shape, dtype=np.float32)
    _lut_planes(region, lut, norm)
    plain: dict[tuple, np.ndarray] = {}  # box -> its unflipped output block, the cheapest flip source
    for k, (box, flipped) in enumerate(views):
        x0, y0, x1, y1 = box
        dst = out[k * t_len : (k + 1) * t_len]
        if flipped:
            src = plain.get(box)
            if src is None:
                src = norm[:, :, y0 - uy0 : y1 - uy0, x0 - ux0 : x1 - ux0]
            for i in range(t_len):
                for c in range(3):
                    cv2.flip(np.ascontiguousarray(src[i, c]), 1, dst=dst[i, c])
        else:
            dst[...] = norm[:, :, y0 - uy0 : y1 - uy0, x0 - ux0 : x1 - ux0]
            plain[box] = dst
    return out

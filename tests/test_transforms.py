"""Transforms: every crop box by hand, and bit-exact equality with a PIL-based reference that follows
PaddleVideo's steps (PIL images, ``cv2.resize(np.asarray(img))``, ``Image.crop`` with float boxes)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from tsn_cli.data import transforms as T

MEAN = np.array(T.IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
STD = np.array(T.IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)


# ------------------------------------------------------------------ PIL reference (PaddleVideo's steps)
def ref_scale(imgs, short):
    out = []
    for img in imgs:
        w, h = img.size
        if (w <= h and w == short) or (h <= w and h == short):
            out.append(img)
            continue
        if w <= h:
            sf = short / w
        else:
            sf = short / h
        oh, ow = int(h * float(sf) + 0.5), int(w * float(sf) + 0.5)
        out.append(Image.fromarray(cv2.resize(np.asarray(img), (ow, oh), interpolation=cv2.INTER_LINEAR)))
    return out


def ref_msc(imgs, box, target):
    crops = [img.crop(box) for img in imgs]  # PIL rounds the float box itself
    return [Image.fromarray(cv2.resize(np.asarray(c), dsize=(target, target), interpolation=cv2.INTER_LINEAR))
            for c in crops]


def ref_flip(imgs):
    return [img.transpose(Image.FLIP_LEFT_RIGHT) for img in imgs]


def ref_center(imgs, t):
    w, h = imgs[0].size
    x1, y1 = (w - t) // 2, (h - t) // 2
    return [img.crop((x1, y1, x1 + t, y1 + t)) for img in imgs]


def ref_tencrop(imgs, t):
    w, h = imgs[0].size
    ws, hs = (w - t) // 4, (h - t) // 4
    out = []
    for x, y in [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]:
        c = [img.crop((x, y, x + t, y + t)) for img in imgs]
        out.extend(c)
        out.extend(ci.transpose(Image.FLIP_LEFT_RIGHT) for ci in c)
    return out


def ref_to_tensor(imgs):
    x = np.stack([np.asarray(i) for i in imgs]).astype("float32").transpose(0, 3, 1, 2)
    x = x / 255.0
    x -= MEAN
    x /= STD
    return x


def rand_frames(t, h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (t, max(2, h // 4), max(2, w // 4), 3), dtype=np.uint8)
    frames = np.stack([cv2.resize(s, (w, h), interpolation=cv2.INTER_CUBIC) for s in small])
    noise = rng.integers(0, 40, frames.shape, dtype=np.uint8)
    return np.ascontiguousarray(frames // 2 + noise)


def pil(frames):
    return [Image.fromarray(f) for f in frames]


# ----------------------------------------------------------------------------------------- Scale
@pytest.mark.parametrize(
    "w,h,expected",
    [((320), 240, (341, 256)), (256, 256, (256, 256)), (200, 300, (256, 384)), (400, 256, (400, 256)),
     (256, 500, (256, 500)), (64, 48, (341, 256)), (1920, 1080, (455, 256)), (171, 128, (342, 256))],
)
def test_scale_size_hand_computed(w, h, expected):
    assert T.scale_size(w, h, 256) == expected


@pytest.mark.parametrize("hw", [(240, 320), (48, 64), (300, 200), (256, 340), (97, 131)])
def test_scale_matches_reference(hw):
    f = rand_frames(2, *hw, seed=hw[0])
    got = T.scale_short_side(f, 256)
    exp = np.stack([np.asarray(i) for i in ref_scale(pil(f), 256)])
    assert got.shape == exp.shape and np.array_equal(got, exp)


# ------------------------------------------------------------------------------------ MultiScaleCrop
def test_multiscale_candidates_341x256_hand_computed():
    pairs, offsets_for = T.multi_scale_crop_candidates(341, 256, 224)
    # base 256 -> sizes [256, 224, 192, 168]; pairs (w, h) with |i - j| <= 1, h-major as PaddleVideo
    assert pairs == [(256, 256), (224, 256), (256, 224), (224, 224), (192, 224),
                     (224, 192), (192, 192), (168, 192), (192, 168), (168, 168)]
    assert offsets_for((224, 224)) == [(0, 0), (117.0, 0), (0, 32.0), (117.0, 32.0), (58.5, 16.0)]
    assert offsets_for((168, 192)) == [(0, 0), (173.0, 0), (0, 64.0), (173.0, 64.0), (86.5, 32.0)]


def test_multiscale_snap_within_3px():
    # base 255: int(255*.875)=223 snaps to 224 (|223-224| < 3); 256*.875 = 224 exactly; base 260 -> 227 does not snap
    pairs, _ = T.multi_scale_crop_candidates(300, 255, 224)
    assert {p[0] for p in pairs} == {255, 224, 191, 168}
    pairs, _ = T.multi_scale_crop_candidates(300, 260, 224)
    assert {p[0] for p in pairs} == {260, 227, 195, 171}


def test_pil_rounding_of_float_boxes():
    # Pillow's Image.crop rounds each coordinate with round() (half to even)
    assert T.pil_round_box((58.5, 16.0, 282.5, 240.0)) == (58, 16, 282, 240)
    assert T.pil_round_box((42.5, 0, 217.5, 200)) == (42, 0, 218, 200)  # a 175 crop becomes 176 wide
    img = Image.fromarray(rand_frames(1, 200, 260)[0])
    assert img.crop((42.5, 0, 217.5, 200)).size == (176, 200)
    assert img.crop((58.5, 1.5, 60.5, 3.5)).size == (2, 2)


def test_every_multiscale_box_matches_pil_reference():
    # All 10 pairs x 5 offsets on a scaled UCF101 frame, plus a frame where the PIL rounding changes the width.
    for (w, h), target in [((341, 256), 224), ((260, 200), 176)]:
        f = rand_frames(2, h, w, seed=w)
        pairs, offsets_for = T.multi_scale_crop_candidates(w, h, target)
        for pair in pairs:
            for ox, oy in offsets_for(pair):
                box = (ox, oy, ox + pair[0], oy + pair[1])
                got = T.resize_frames(T.crop(f, box), target, target)
                exp = np.stack([np.asarray(i) for i in ref_msc(pil(f), box, target)])
                assert np.array_equal(got, exp), (w, h, pair, (ox, oy))


def test_multiscale_draw_is_one_box_per_clip_and_seeded():
    f = rand_frames(3, 256, 341)
    a = T.multi_scale_crop(f, np.random.default_rng(5))
    b = T.multi_scale_crop(f, np.random.default_rng(5))
    assert a.shape == (3, 224, 224, 3) and np.array_equal(a, b)
    box = T.multi_scale_crop_box(341, 256, np.random.default_rng(5))
    exp = np.stack([np.asarray(i) for i in ref_msc(pil(f), box, 224)])
    assert np.array_equal(a, exp)
    # every (pair, offset) box is reachable (duplicates collapse: 50 candidates, 46 distinct boxes here)
    pairs, offsets_for = T.multi_scale_crop_candidates(341, 256, 224)
    cands = {(ox, oy, ox + p[0], oy + p[1]) for p in pairs for ox, oy in offsets_for(p)}
    seen = {T.multi_scale_crop_box(341, 256, r) for r in [np.random.default_rng(s) for s in range(2000)]}
    assert seen == cands and len(cands) == 46


def test_random_flip():
    f = rand_frames(2, 8, 10)
    flips = [np.array_equal(T.random_flip(f, np.random.default_rng(s)), f[:, :, ::-1]) for s in range(200)]
    assert 60 < sum(flips) < 140
    assert np.array_equal(T.random_flip(f, np.random.default_rng(0), p=0.0), f)
    assert np.array_equal(T.random_flip(f, np.random.default_rng(0), p=1.0), f[:, :, ::-1])


# ---------------------------------------------------------------------------------------- test crops
def test_center_crop_boxes_hand_computed():
    assert T.center_crop_box(341, 256, 224) == (58, 16, 282, 240)
    assert T.center_crop_box(256, 455, 224) == (16, 115, 240, 339)
    assert T.center_crop_box(225, 224, 224) == (0, 0, 224, 224)  # do_round False: (225-224)//2 = 0
    with pytest.raises(ValueError, match="smaller"):
        T.center_crop_box(200, 256, 224)


def test_three_crop_boxes_hand_computed():
    assert T.three_crop_boxes(341, 256, 224) == [(0, 16, 224, 240), (116, 16, 340, 240), (58, 16, 282, 240)]
    assert T.three_crop_boxes(256, 341, 224) == [(16, 0, 240, 224), (16, 116, 240, 340), (16, 58, 240, 282)]
    # PaddleVideo UniformCrop when one side equals the crop
    assert T.three_crop_boxes(341, 256, 256) == [(0, 0, 256, 256), (84, 0, 340, 256), (42, 0, 298, 256)]


def test_ten_crop_boxes_hand_computed():
    # spec: 341x256 -> ws = 29, hs = 8 -> (0,0), (116,0), (0,32), (116,32), (58,16)
    assert T.ten_crop_boxes(341, 256, 224) == [
        (0, 0, 224, 224), (116, 0, 340, 224), (0, 32, 224, 256), (116, 32, 340, 256), (58, 16, 282, 240)]


def test_ten_crop_order_and_count():
    t = 3
    f = rand_frames(t, 256, 341, seed=9)
    out = T.ten_crop(f, 224)
    assert out.shape == (10 * t, 224, 224, 3)
    k = 0
    for (x0, y0, x1, y1) in T.ten_crop_boxes(341, 256, 224):
        for flip in (False, True):
            for s in range(t):
                exp = f[s, y0:y1, x0:x1]
                assert np.array_equal(out[k], exp[:, ::-1] if flip else exp), (k, x0, y0, flip, s)
                k += 1
    ref = np.stack([np.asarray(i) for i in ref_tencrop(pil(f), 224)])
    assert np.array_equal(out, ref)


def test_three_crop_order_and_count():
    f = rand_frames(2, 256, 341, seed=3)
    out = T.three_crop(f, 224)
    assert out.shape == (6, 224, 224, 3)
    boxes = T.three_crop_boxes(341, 256, 224)
    for c, (x0, y0, x1, y1) in enumerate(boxes):
        for s in range(2):
            assert np.array_equal(out[c * 2 + s], f[s, y0:y1, x0:x1])


# --------------------------------------------------------------------------------- normalisation
def test_normalize_bit_exact():
    f = rand_frames(2, 16, 12)
    got = T.normalize(f)
    exp = ref_to_tensor(pil(f))
    assert got.dtype == np.float32 and got.shape == (2, 3, 16, 12)
    assert np.array_equal(got, exp)
    allv = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    assert np.array_equal(T.normalize(allv), ref_to_tensor(pil(allv)))


# ---------------------------------------------------------------------------------- full pipelines
@pytest.mark.parametrize("hw", [(240, 320), (48, 64), (360, 480), (300, 224)])
def test_train_transform_equals_reference(hw):
    f = rand_frames(3, *hw, seed=hw[1])
    tr = T.TrainTransform()
    for seed in range(6):
        got = tr(f, np.random.default_rng(seed))
        # replay the same draws: box, then flip
        rng = np.random.default_rng(seed)
        scaled = ref_scale(pil(f), 256)
        w, h = scaled[0].size
        box = T.multi_scale_crop_box(w, h, rng)
        imgs = ref_msc(scaled, box, 224)
        if rng.random() < 0.5:
            imgs = ref_flip(imgs)
        exp = ref_to_tensor(imgs)
        assert got.shape == (3, 3, 224, 224)
        assert np.array_equal(got, exp), (hw, seed)


@pytest.mark.parametrize("crops", [1, 3, 10])
def test_test_transform_equals_reference(crops):
    f = rand_frames(2, 240, 320, seed=crops)
    got = T.TestTransform(crops=crops)(f)
    scaled = ref_scale(pil(f), 256)
    if crops == 1:
        imgs = ref_center(scaled, 224)
    elif crops == 10:
        imgs = ref_tencrop(scaled, 224)
    else:
        imgs = []
        for b in T.three_crop_boxes(341, 256, 224):
            imgs.extend(i.crop(b) for i in scaled)
    assert got.shape == (crops * 2, 3, 224, 224)
    assert np.array_equal(got, ref_to_tensor(imgs))


def test_bad_input_rejected():
    with pytest.raises(ValueError, match="uint8"):
        T.normalize(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="crops"):
        T.TestTransform(crops=5)

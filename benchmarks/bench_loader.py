"""Training-loader throughput: clips/s per worker (decode + sample + augment) vs a PaddleVideo-style baseline.

Ours:      `TSNDataset` in training mode (decord get_batch of the sampled frames only / cv2 JPEG decode of the
           sampled frame files; numpy/cv2 Scale -> MultiScaleCrop -> flip -> LUT normalisation).
Baseline:  what PaddleVideo's pipeline does -- videos: ``cv2.VideoCapture`` decodes EVERY frame (its ``cv2``
           VideoDecoder backend), BGR->RGB; frames: ``PIL.Image.open(f).convert('RGB')`` of the sampled files; then
           the PIL-object pipeline: Scale (cv2 on ``np.asarray(pil)`` -> PIL), MultiScaleCrop (``PIL.crop`` -> cv2
           resize -> PIL), RandomFlip (PIL transpose), Image2Array, Normalization.

Data: generated 320x240 XVID AVIs (UCF101-like, 150 frames = 6 s at 25 fps) and their JPEG frames (quality 95,
as PaddleVideo's extractor writes). One process = one worker (cv2 limited to 1 thread); a final run with
``paddle.io.DataLoader`` and 2 workers shows the scaling on this machine.

    python benchmarks/bench_loader.py [--videos 8] [--frames 150] [--seconds 4] [--data DIR] [--no-loader]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: tsn_cli and tests/ from this checkout

from tsn_cli.constants import CROP_SCALES, FRAME_TEMPLATE, IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

MEAN = np.array(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
STD = np.array(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)


def make_data(root: Path, n: int, frames: int) -> tuple[Path, Path]:
    """320x240 XVID videos + JPEG frame folders + both lists (reused when present)."""
    from tests.helpers_data import write_video

    vlist, flist = root / "videos.txt", root / "frames.txt"
    if vlist.exists() and flist.exists():
        return vlist, flist
    vl, fl = [], []
    for k in range(n):
        p = write_video(root / "videos" / f"v{k:02d}.avi", frames, 320, 240, "XVID", seed=k)
        cap = cv2.VideoCapture(p)  # frames as PaddleVideo's extractor writes them: every decoded frame
        folder = root / "frames" / f"v{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        i = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            i += 1
            cv2.imwrite(str(folder / FRAME_TEMPLATE.format(i)), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cap.release()
        vl.append(f"videos/v{k:02d}.avi {k % 4}")
        fl.append(f"frames/v{k:02d} {i} {k % 4}")
    vlist.write_text("\n".join(vl) + "\n")
    flist.write_text("\n".join(fl) + "\n")
    return vlist, flist


# ------------------------------------------------------------------------------------------ baseline
def baseline_clip(rec, fmt: str, seg_num: int):
    """PaddleVideo-style: decode (cv2 all frames / PIL sampled files), sample, PIL-object augmentation."""
    from PIL import Image

    if fmt == "video":
        cap = cv2.VideoCapture(rec.path)
        decoded = []
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for _ in range(n):
            ok, f = cap.read()
            if ok:
                decoded.append(f[:, :, ::-1])
        cap.release()
        L = len(decoded)
    else:
        L = rec.num_frames
    avg = L // seg_num
    offs = [i * avg + np.random.randint(avg) for i in range(seg_num)]
    if fmt == "video":
        imgs = [Image.fromarray(decoded[o % L], "RGB") for o in offs]
    else:
        imgs = [Image.open(os.path.join(rec.path, FRAME_TEMPLATE.format(o + 1))).convert("RGB") for o in offs]
    # Scale(256, fixed_ratio False, do_round True, cv2)
    w, h = imgs[0].size
    sf = 256 / min(w, h)
    ow, oh = int(w * sf + 0.5), int(h * sf + 0.5)
    imgs = [Image.fromarray(cv2.resize(np.asarray(im), (ow, oh), interpolation=cv2.INTER_LINEAR)) for im in imgs]
    # MultiScaleCrop(224, allow_duplication True, more_fix_crop False, cv2)
    base = min(ow, oh)
    sizes = [int(base * s) for s in CROP_SCALES]
    cs = [224 if abs(x - 224) < 3 else x for x in sizes]
    pairs = [(cs[j], cs[i]) for i in range(4) for j in range(4) if abs(i - j) <= 1]
    cw, ch = random.choice(pairs)
    ws, hs = (ow - cw) / 4, (oh - ch) / 4
    ox, oy = random.choice([(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)])
    imgs = [im.crop((ox, oy, ox + cw, oy + ch)) for im in imgs]
    imgs = [Image.fromarray(cv2.resize(np.asarray(im), dsize=(224, 224), interpolation=cv2.INTER_LINEAR))
            for im in imgs]
    if random.random() < 0.5:
        imgs = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in imgs]
    x = np.stack(imgs).astype("float32").transpose(0, 3, 1, 2)
    x = x / 255.0
    x -= MEAN
    x /= STD
    return x


# ------------------------------------------------------------------------------------------- timing
def rate(fn, n_items: int, seconds: float) -> tuple[float, int]:
    """Clips/s of fn(i) over at least `seconds` (after one warm-up call)."""
    fn(0)
    t0 = time.perf_counter()
    k = 0
    while True:
        fn(k % n_items)
        k += 1
        el = time.perf_counter() - t0
        if el >= seconds and k >= 5:
            return k / el, k


def profile_ours(ds, n: int, reps: int = 20) -> dict:
    """Split one worker's time into decode / scale / crop+resize+flip / normalise (ms per clip)."""
    from tsn_cli.data import transforms as T
    from tsn_cli.data.sampling import segment_indices
    from tsn_cli.data.video import open_source

    tt = {"open+decode": 0.0, "scale": 0.0, "crop+resize+flip": 0.0, "normalize": 0.0}
    for k in range(reps):
        rec = ds.records[k % n]
        rng = np.random.default_rng(k)
        t0 = time.perf_counter()
        with open_source(rec, ds.fmt) as src:
            frames = src.get(segment_indices(src.num_frames, ds.seg_num, True, rng))
        t1 = time.perf_counter()
        x = T.scale_short_side(frames, 256)
        t2 = time.perf_counter()
        x = T.random_flip(T.multi_scale_crop(x, rng), rng)
        t3 = time.perf_counter()
        T.normalize(x)
        t4 = time.perf_counter()
        for key, dt in zip(tt, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            tt[key] += dt
    return {k: 1000 * v / reps for k, v in tt.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--data", type=Path, default=None, help="data folder (default: a temporary one)")
    ap.add_argument("--no-loader", action="store_true", help="skip the multi-worker DataLoader run")
    args = ap.parse_args()

    cv2.setNumThreads(1)  # one worker = one core
    from tsn_cli.data.dataset import TSNDataset, build_loader
    from tsn_cli.data.lists import read_list
    from tsn_cli.data.transforms import TrainTransform

    tmp = None
    root = args.data
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="tsn-bench-")
        root = Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vlist, flist = make_data(root, args.videos, args.frames)
    print(f"data: {args.videos} videos 320x240 XVID, {args.frames} frames each, + JPEG frames "
          f"({time.perf_counter() - t0:.1f}s to make)")
    print(f"cpu: {os.cpu_count()} cores; one process = one worker; {args.seconds:.0f}s per measurement\n")
    print(f"{'list':7} {'seg':>3} {'ours clips/s':>13} {'baseline clips/s':>17} {'ratio':>7}")
    results = {}
    random.seed(0)
    np.random.seed(0)
    for fmt, lst in (("frames", flist), ("video", vlist)):
        recs = read_list(lst, fmt).records
        for seg in (3, 7):
            ds = TSNDataset(recs, fmt, seg, TrainTransform(), train=True, seed=0)
            ours, _ = rate(ds.__getitem__, len(recs), args.seconds)
            base, _ = rate(lambda i, recs=recs, fmt=fmt, seg=seg: baseline_clip(recs[i], fmt, seg), len(recs),
                           args.seconds)
            results[(fmt, seg)] = (ours, base)
            print(f"{fmt:7} {seg:>3} {ours:13.1f} {base:17.1f} {ours / base:6.1f}x", flush=True)
    print()
    for fmt, lst in (("frames", flist), ("video", vlist)):
        recs = read_list(lst, fmt).records
        ds = TSNDataset(recs, fmt, 3, TrainTransform(), train=True, seed=0)
        prof = profile_ours(ds, len(recs))
        print(f"ours, {fmt}, seg 3, ms per clip: " + ", ".join(f"{k} {v:.2f}" for k, v in prof.items()))
    if not args.no_loader:
        recs = read_list(flist, "frames").records * 8
        ds = TSNDataset(recs, "frames", 3, TrainTransform(), train=True, seed=0)
        for workers in (0, 2):
            loader = build_loader(ds, batch_size=16, shuffle=True, workers=workers, seed=0, drop_last=True)
            it = iter(loader)
            next(it)  # start-up (worker fork) excluded
            t0 = time.perf_counter()
            n = 0
            for batch in it:
                n += int(batch[0].shape[0])
                if time.perf_counter() - t0 > args.seconds:
                    break
            el = time.perf_counter() - t0
            print(f"paddle DataLoader, frames, seg 3, batch 16, workers={workers}: {n / el:.1f} clips/s")
    target = results[("frames", 3)][0]
    print(f"\ntarget: one worker >= 60 clips/s at seg_num 3 on a 320x240 frame list -> {target:.1f} clips/s "
          f"({'met' if target >= 60 else 'NOT met'})")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

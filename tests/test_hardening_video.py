"""Hardening II (issue 17), videos: a per-file time budget (family 4) and honest frame counts (family 5).

Family 4: a real AVI padded with zeros to a sparse multi-gigabyte file makes FFmpeg scan every byte for the next
chunk (~7 s per GB here; decord ~5-17 s per GB just to open it). `check` (quick and full), `eval` and `predict`
must each report it as one bad item "took longer than N s to open/decode" under `--video-timeout N`, and carry on
with the other videos -- each run under a subprocess timeout shorter than one unguarded pass over the file, and an
address-space limit.

Family 5: valid videos whose container gives no frame count (VFR WebM, MKV: OpenCV guesses duration x frame
rate) or hides pre-roll frames (an `ffmpeg -ss ... -c copy` cut: an MP4 edit list) are OK for `check` and
`prepare --frames`, with the frame counts decoding gives; a really truncated file stays "truncated: X of Y".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from tests.helpers_data import frame_image, write_video
from tests.test_hardening_bounded import TIMEOUT, TIMEOUT_PADDLE, bounded

PADDED = 4 << 30  # one unguarded pass over the zeros takes longer than the subprocess timeouts below
BUDGET = "2"


# ------------------------------------------------------------------------------------- 4. per-file time budget
@pytest.fixture()
def padded(tmp_path):
    """tmp/clip.avi (8 frames) and tmp/big.avi: the same clip padded with zeros to a sparse 4 GiB file, listed."""
    write_video(tmp_path / "clip.avi", 8, 64, 48)
    shutil.copy(tmp_path / "clip.avi", tmp_path / "big.avi")
    os.truncate(tmp_path / "big.avi", PADDED)  # sparse: no disk used
    (tmp_path / "videos.txt").write_text("clip.avi 0\nbig.avi 1\n")
    return tmp_path


@pytest.mark.parametrize("quick", [False, True])
def test_check_reports_a_slow_video_as_bad_within_its_budget(padded, quick):
    args = ["prepare", "check", padded / "videos.txt", "--video-timeout", BUDGET, "--json"]
    p = bounded(*args, *(["--quick"] if quick else []), timeout=TIMEOUT)
    doc = json.loads(p.stdout)
    assert p.returncode == 1 and doc["ok"] == 1, p.stderr[-2000:]
    assert [(Path(b["path"]).name, b["reason"]) for b in doc["bad"]] == [
        ("big.avi", "took longer than 2 s to open/decode (limit: --video-timeout)")
    ]


def test_predict_and_eval_report_a_slow_video_and_score_the_rest(padded, tiny_export):
    p = bounded("predict", padded / "clip.avi", padded / "big.avi", "--model", tiny_export.dir, "--json",
                "--video-timeout", BUDGET, timeout=TIMEOUT_PADDLE)
    assert p.returncode == 1, p.stderr[-2000:]
    by_name = {Path(r["path"]).name: r for r in json.loads(p.stdout)}
    assert "error" not in by_name["clip.avi"] and by_name["clip.avi"]["top_k"]
    assert "took longer than 2 s to open/decode" in by_name["big.avi"]["error"], by_name["big.avi"]

    p = bounded("eval", "--weights", tiny_export.weights, "--config", tiny_export.cfg_file, "--list",
                padded / "videos.txt", "-o", "runtime.workers=0", "--video-timeout", BUDGET, "--json",
                timeout=TIMEOUT_PADDLE)
    assert p.returncode == 1, p.stderr[-2000:]
    doc = json.loads(p.stdout)
    assert doc["num_videos"] == 1, doc
    assert [(Path(u["path"]).name, u["reason"]) for u in doc["unreadable"]] == [
        ("big.avi", "took longer than 2 s to open/decode (limit: --video-timeout)")
    ]


def test_video_timeout_must_be_positive(padded):
    p = bounded("prepare", "check", padded / "videos.txt", "--video-timeout", "0")
    assert p.returncode == 2 and b"greater than or equal to 0.001" in p.stderr, p.stderr[-2000:]
    env = dict(os.environ, TSN_VIDEO_TIMEOUT="soon", PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "tsn_cli", "prepare", "check", padded / "videos.txt"], env=env,
                       capture_output=True, timeout=TIMEOUT)
    assert p.returncode == 2 and p.stderr.decode().strip() == "error: TSN_VIDEO_TIMEOUT='soon': expected seconds > 0 " \
        "(e.g. 60)", p.stderr[-2000:]


# ----------------------------------------------------------------------------------------- 5. honest counts
def _encode(path: Path, codec: str, n: int, vfr: bool, gop: int | None = None, bframes: int = 0) -> Path:
    """`n` frames of tests.helpers_data.frame_image with PyAV; `vfr`: 20 ms and 120 ms frame gaps mixed."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt, s.time_base = 64, 48, "yuv420p", Fraction(1, 1000)
        if gop:
            s.codec_context.gop_size = gop
        if bframes:
            s.codec_context.options = {"bf": str(bframes)}
        t = 0
        for i in range(n):
            f = av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            t += (20 if i % 3 else 120) if vfr else 40
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def _encode_apart(path: Path, codec: str, n: int, vfr: bool) -> Path:
    """`_encode` in a fresh interpreter: once decord is loaded in a process (an earlier test), its bundled older
    libvpx takes the symbols PyAV's libvpx encoder calls and opening the encoder fails (EINVAL). tsn itself never
    encodes with PyAV; decoding uses FFmpeg's own VP8/VP9 decoders, which do not call libvpx."""
    code = "import sys; from tests.test_hardening_video import _encode as e; a = sys.argv; "
    code += "e(a[1], a[2], int(a[3]), a[4] == '1')"
    subprocess.run([sys.executable, "-c", code, str(path), codec, str(n), "1" if vfr else "0"], check=True, timeout=120,
                   cwd=str(Path(__file__).resolve().parents[1]))
    return path


def _cut_copy(src: Path, dst: Path, start: int) -> Path:
    """What `ffmpeg -ss T -i src -c copy dst` writes: packets from the key frame before frame `start`, time stamps
    shifted so that frame `start` is at 0; the pre-roll frames get negative times, which the MP4 muxer hides
    behind an edit list (their packets are still in the file and in its frame count)."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        si = i.streams.video[0]
        so = o.add_stream_from_template(si)
        pkts = [p for p in i.demux(si) if p.size]
        shown = sorted(p.pts for p in pkts)
        first = max(k for k, p in enumerate(shown) if k <= start and any(q.pts == p and q.is_keyframe for q in pkts))
        for p in pkts:
            if p.pts >= shown[first]:
                p.pts, p.dts, p.stream = p.pts - shown[start], p.dts - shown[start], so
                o.mux(p)
    return dst


def _decoded(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture()
def honest(tmp_path):
    """A class folder of valid videos whose frame count OpenCV gets wrong: VFR WebM (VP8), VFR MKV (H.264) and a
    stream-copied MP4 cut with hidden pre-roll; plus a really truncated AVI. Returns (root, decoded counts)."""
    root = tmp_path / "clips"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    _encode_apart(root / "a" / "vfr.webm", "libvpx", 40, vfr=True)
    _encode(root / "b" / "vfr.mkv", "libx264", 40, vfr=True)
    _encode(tmp_path / "src.mp4", "libx264", 60, vfr=False, gop=12, bframes=2)
    _cut_copy(tmp_path / "src.mp4", root / "a" / "cut.mp4", 17)
    write_video(root / "b" / "plain.avi", 12, 64, 48)
    counts = {p.relative_to(root).as_posix(): _decoded(p) for p in sorted(root.rglob("*.*"))}
    return root, counts


def test_valid_videos_are_never_called_truncated(honest, tmp_path):
    import cv2

    root, counts = honest
    # the premise: OpenCV's estimate is off for each of them (a check comparing with it called them truncated)
    claimed = {n: int(cv2.VideoCapture(str(root / n)).get(cv2.CAP_PROP_FRAME_COUNT)) for n in counts}
    assert all(claimed[n] > counts[n] + 1 for n in ("a/vfr.webm", "b/vfr.mkv", "a/cut.mp4")), (claimed, counts)
    lst = tmp_path / "videos.txt"
    lst.write_text("".join(f"{p.relative_to(root)} 0\n" for p in sorted(root.rglob("*.*"))))
    for quick in ([], ["--quick"]):
        p = bounded("prepare", "check", lst, "--data-root", root, "--json", *quick, timeout=TIMEOUT)
        doc = json.loads(p.stdout)
        assert p.returncode == 0 and doc["bad"] == [] and doc["ok"] == 4, doc
    assert doc["frames"] == 4  # quick: the first frame of each
    p = bounded("prepare", "check", lst, "--data-root", root, "--json", timeout=TIMEOUT)
    assert json.loads(p.stdout)["frames"] == sum(counts.values())


def test_frames_of_valid_videos_are_extracted_with_the_decoded_counts(honest):
    root, counts = honest
    p = bounded("prepare", "folder", root, "--frames", "--json", "-j", "1", "--val", "0", timeout=TIMEOUT * 3)
    assert p.returncode == 0, p.stdout[-2000:]
    doc = json.loads(p.stdout)
    assert doc["extraction"]["extracted"] == 4, doc["extraction"]
    rows = (root / "train_rawframes.txt").read_text().split("\n")
    listed = {r.split()[0]: int(r.split()[1]) for r in rows if r}
    assert listed == {f"rawframes/{n.rsplit('.', 1)[0]}": c for n, c in counts.items()}, (listed, counts)
    for folder, n in listed.items():
        assert len(list((root / folder).glob("img_*.jpg"))) == n


def test_a_really_truncated_video_is_still_truncated(tmp_path):
    write_video(tmp_path / "full.avi", 30, 64, 48)
    data = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    (tmp_path / "videos.txt").write_text("cut.avi 0\nfull.avi 0\n")
    p = bounded("prepare", "check", tmp_path / "videos.txt", "--json", timeout=TIMEOUT)
    doc = json.loads(p.stdout)
    assert p.returncode == 1 and doc["ok"] == 1, doc
    reason = doc["bad"][0]["reason"]
    assert reason.startswith("truncated: ") and reason.endswith(" of 30 frames decodable"), reason


def test_predict_reads_valid_videos_without_a_truncation_warning(honest, tiny_export):
    root, counts = honest
    paths = [root / n for n in ("a/vfr.webm", "b/vfr.mkv", "a/cut.mp4")]
    p = bounded("predict", *paths, "--model", tiny_export.dir, "--json", timeout=TIMEOUT_PADDLE)
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads(p.stdout)
    assert [(Path(d["path"]).name, d["warnings"]) for d in doc] == [(x.name, []) for x in paths], doc

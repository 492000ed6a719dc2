"""`tsn predict --timeline`: a window over a whole clip equals plain `tsn predict` (every engine), a video made of
demo clips of different classes gets the right segments in the right order, the output files, bad spans, and
memory that does not grow with the video's length."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers_cli import REPO
from tests.helpers_data import write_frames, write_video
from tests.helpers_deploy import NUM_CLASSES, bikes, write_clip
from tests.helpers_timeline import DEMO_FRAMES, build_demo_model, write_concat


def _probs(doc_item) -> np.ndarray:
    """The full probability vector of a plain prediction (--all-scores) or of a timeline window (top-k = all)."""
    if "scores" in doc_item:
        return np.array(doc_item["scores"])
    out = np.zeros(len(doc_item["top_k"]))
    for t in doc_item["top_k"]:
        out[t["class_id"]] = t["score"]
    return out


@pytest.mark.parametrize("engine,views,real", [
    (["--backend", "paddle"], ["--seg-num", "5", "--crops", "3"], False),
    (["--backend", "onnxruntime"], ["--seg-num", "4"], True),
    (["--weights"], ["--seg-num", "3", "--crops", "3"], False),
])
def test_window_over_whole_clip_equals_plain_predict(tiny_export, tsn, tmp_path, engine, views, real):
    """One window covering the clip samples the same frames as plain predict; its scores agree to 1e-5, though
    the timeline ran each frame alone and averaged the frame logits (and read the frames with one OpenCV pass
    where predict uses decord: the real H.264 clip checks the pixels are the same)."""
    clip = bikes() if real else write_clip(tmp_path / "clip.avi", frames=37)
    length = 250 if real else 37
    model = ["--weights", tiny_export.weights, "--config", tiny_export.cfg_file] if engine == ["--weights"] \
        else ["--model", tiny_export.dir, *engine]
    plain = json.loads(tsn("predict", clip, *model, *views, "--json", "--all-scores", check=True).stdout)
    tl = json.loads(tsn("predict", clip, *model, *views, "--json", "--timeline", "--window", "999f",
                        "--top-k", NUM_CLASSES, check=True).stdout)
    assert len(tl) == 1 and len(tl[0]["windows"]) == 1
    w = tl[0]["windows"][0]
    assert (w["start_frame"], w["end_frame"]) == (0, length)
    seg = int(views[1])
    assert tl[0]["distinct_frames"] == seg and tl[0]["seg_num"] == seg
    np.testing.assert_allclose(_probs(w), _probs(plain[0]), atol=1e-5)
    assert abs(_probs(w).sum() - 1) < 1e-5  # every class compared (top-k = all classes)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A model that recognises 3 demo classes, and a long video: 3 held-out clips each of A, B, C, A."""
    tmp = tmp_path_factory.mktemp("timeline_demo")
    m = build_demo_model(tmp)
    order = [0, 1, 2, 0]
    clips = [c for k in order for c in m.test_clips[m.classes[k]][:3]]
    counts = write_concat(tmp / "long.avi", clips)
    assert counts == [DEMO_FRAMES] * len(clips)
    return {"model": m, "video": tmp / "long.avi", "order": [m.classes[k] for k in order],
            "bounds": [3 * DEMO_FRAMES * (i + 1) for i in range(len(order) - 1)], "frames": sum(counts), "tmp": tmp}


@pytest.mark.parametrize("backend", ["paddle", "onnxruntime"])
def test_concatenated_clips_give_segments_in_order(demo, tsn, tmp_path, backend):
    """Segments name the right class in the right order; each boundary is within one stride of the true one;
    the files of --output agree with --json; far fewer frames are run than windows x seg_num."""
    stride = 8
    out = tmp_path / "out"
    r = tsn("predict", demo["video"], "--model", demo["model"].dir, "--backend", backend, "--timeline",
            "--seg-num", 4, "--window", "16f", "--stride", f"{stride}f", "--threshold", "0.5", "--json",
            "--output", out, check=True)
    doc = json.loads(r.stdout)[0]
    segs = doc["segments"]
    assert [s["label"] for s in segs] == demo["order"], segs
    for left, right, true in zip(segs, segs[1:], demo["bounds"], strict=False):
        assert abs(left["end_frame"] - true) <= stride and abs(right["start_frame"] - true) <= stride, (segs, true)
    assert segs[0]["start_frame"] == 0 and segs[-1]["end_frame"] == demo["frames"]
    assert all(s["score"] >= 0.5 for s in segs)
    assert doc["fps"] == 25.0 and segs[1]["start"] == pytest.approx(segs[1]["start_frame"] / 25, abs=1e-3)
    # 4 segments of 4 frames, stride 8: each window shares 2 frames with the next -> ~half the naive work
    assert doc["seg_num"] == 4 and doc["distinct_frames"] < 0.6 * doc["naive_frames"]
    assert json.loads((out / "timeline.json").read_text())["segments"] == segs
    rows = list(csv.DictReader((out / "timeline.csv").open()))
    assert len(rows) == len(doc["windows"])
    assert [r["label"] for r in rows] == [w["top_k"][0]["label"] for w in doc["windows"]]
    assert set(demo["model"].classes) <= set(rows[0])  # one probability column per class
    import cv2

    png = cv2.imread(str(out / "timeline.png"))
    assert png is not None and png.shape[1] > 800 and png.shape[0] > 150


def test_timeline_table(demo, tsn):
    """Without --json: one table of merged segments, times as m:ss.ss."""
    r = tsn("predict", demo["video"], "--model", demo["model"].dir, "--timeline", "--window", "16f",
            "--stride", "8f", check=True)
    lines = [ln for ln in r.stdout.splitlines() if "│" in ln]
    assert [next(c for c in demo["order"] if c in ln) for ln in lines] == demo["order"]
    assert "0:00.00" in lines[0] and "windows" in r.stdout


def test_frame_folder_timeline_and_bad_spans(tiny_export, tsn, tmp_path):
    """A frame folder works with frame spans; seconds without a frame rate, a bad span and --output without
    --timeline are one-line usage errors."""
    folder = write_frames(tmp_path / "rawframes" / "v1", num_frames=30)
    m = ["--model", tiny_export.dir]
    r = tsn("predict", folder, *m, "--timeline", "--window", "10f", "--stride", "5f", "--json", check=True)
    doc = json.loads(r.stdout)[0]
    assert doc["fps"] is None and doc["num_frames"] == 30 and len(doc["windows"]) == 5
    assert doc["segments"][0]["start"] is None and doc["segments"][-1]["end_frame"] == 30
    r = tsn("predict", folder, *m, "--timeline")
    assert r.returncode == 2 and "--window: 2s is in seconds but the input has no frame rate" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = tsn("predict", folder, *m, "--timeline", "--stride", "fast")
    assert r.returncode == 2 and "--stride: 'fast' is not a duration" in r.stderr
    r = tsn("predict", folder, *m, "--output", tmp_path / "o")
    assert r.returncode == 2 and "--output: only used with --timeline" in r.stderr


_RSS = textwrap.dedent("""
    import resource, subprocess, sys
    p = subprocess.run([sys.executable, "-m", "tsn_cli", *sys.argv[2:]], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    open(sys.argv[1], "w").write(p.stdout)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
""")


def test_memory_does_not_grow_with_video_length(tiny_export, tsn, tmp_path):
    """Peak RSS on a 12,000-frame video (1.0 GB of raw frames at 180x160) is within 40 MB of a 3,000-frame one:
    frames stream through, only pending frame logits are kept. The long video's frames are decoded in a child
    process (paddle.inference holds the GIL); its windows equal those of ONNX Runtime's in-process thread."""
    short = write_video(tmp_path / "short.avi", num_frames=3000, width=180, height=160)
    long = write_video(tmp_path / "long.avi", num_frames=12000, width=180, height=160)
    span = ["--timeline", "--window", "64f", "--stride", "32f", "--json", "--top-k", str(NUM_CLASSES)]
    peak = {}
    for name, video in (("short", short), ("long", long)):
        args = ["predict", str(video), "--model", str(tiny_export.dir), *span]
        out = subprocess.run([sys.executable, "-c", _RSS, str(tmp_path / f"{name}.json"), *args],
                             capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0, out.stderr
        peak[name] = int(out.stdout.strip())
    print(f"peak RSS: short {peak['short']} MB, long {peak['long']} MB")
    assert peak["long"] - peak["short"] < 40, peak
    paddle = json.loads((tmp_path / "long.json").read_text())[0]
    ort = json.loads(tsn("predict", long, "--model", tiny_export.dir, "--backend", "onnxruntime", *span,
                         check=True).stdout)[0]
    assert paddle["num_frames"] == 12000 and len(paddle["windows"]) == len(ort["windows"]) == 374
    for a, b in zip(paddle["windows"], ort["windows"], strict=True):
        np.testing.assert_allclose(_probs(a), _probs(b), atol=1e-4)

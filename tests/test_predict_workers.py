"""`--decode-workers`: predict and eval --model decode in worker processes with exactly the results of decoding
in the main process (0), a bad video is that video's error, and Ctrl-C mid-run exits cleanly (no traceback, no
process left behind)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers_cli import REPO, children, running
from tests.helpers_deploy import bikes, write_clip


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Several small videos (OpenCV-written and a real H.264 clip) with a corrupt one in the middle."""
    vids = tmp_path_factory.mktemp("workers") / "videos"
    write_clip(vids / "a.avi")
    write_clip(vids / "b.avi", frames=9, fourcc="XVID")
    (vids / "c_corrupt.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    shutil.copy(bikes(), vids / "d_bikes.mp4")
    write_clip(vids / "e.avi", frames=30)
    return vids


def test_predict_workers_same_json_as_main_process(tiny_export, videos, tsn):
    """--decode-workers 2 and 0 give identical JSON (every softmax score), the corrupt video is reported by name
    while the others are predicted (exit 1), on paddle.inference and on ONNX Runtime."""
    for backend in ("paddle", "onnxruntime"):
        docs = {}
        for w in (0, 2):
            r = tsn("predict", videos, "--model", tiny_export.dir, "--backend", backend, "--decode-workers", w,
                    "--json", "--all-scores", "--seg-num", 4, "--crops", 3)
            assert r.returncode == 1, r.stderr  # one input failed, the rest predicted
            assert "Traceback" not in r.stderr
            docs[w] = json.loads(r.stdout)
        assert docs[2] == docs[0], backend
        assert [os.path.basename(d["path"]) for d in docs[2]] == ["a.avi", "b.avi", "c_corrupt.avi", "d_bikes.mp4",
                                                                  "e.avi"]
        assert "error" in docs[2][2] and all("scores" in d for i, d in enumerate(docs[2]) if i != 2)


def test_eval_model_workers_same_result(tiny_export, videos, tmp_path, tsn):
    """eval --model: same metrics, per-video scores and unreadable list with 2 workers as with 0."""
    import numpy as np

    names = ["a.avi", "c_corrupt.avi", "b.avi", "d_bikes.mp4", "e.avi"]
    lst = tmp_path / "val.list"
    lst.write_text("".join(f"{videos / n} {i % 4}\n" for i, n in enumerate(names)))
    out = {}
    for w in (0, 2):
        npz = tmp_path / f"s{w}.npz"
        r = tsn("eval", "--model", tiny_export.dir, "--list", lst, "--decode-workers", w, "--json",
                "--save-scores", npz)
        assert r.returncode == 1, r.stdout + r.stderr  # the corrupt video: listed, exit 1
        doc = json.loads(r.stdout)
        doc.pop("inference_frames_per_s", None)
        doc.pop("scores_file")
        out[w] = (doc, np.load(npz))
    (d0, z0), (d2, z2) = out[0], out[2]
    assert d2 == d0
    assert [u["path"] for u in d2["unreadable"]] == [str(videos / "c_corrupt.avi")] and d2["num_videos"] == 4
    np.testing.assert_array_equal(z2["scores"], z0["scores"])
    np.testing.assert_array_equal(z2["paths"], z0["paths"])


def test_decode_workers_usage_errors(tiny_export, videos, tsn):
    """--decode-workers where it does not apply is a one-line usage error (exit 2)."""
    r = tsn("predict", videos / "a.avi", "--model", tiny_export.dir, "--timeline", "--decode-workers", 2)
    assert r.returncode == 2 and "--decode-workers" in r.stderr and "Traceback" not in r.stderr
    r = tsn("eval", "--weights", tiny_export.weights, "--list", videos / "x.list", "--decode-workers", 1)
    assert r.returncode == 2 and "--decode-workers: only with --model" in r.stderr
    r = tsn("predict", videos, "--model", tiny_export.dir, "--decode-workers", -1)
    assert r.returncode == 2


def test_ctrl_c_mid_run_exits_cleanly(tiny_export, tmp_path):
    """SIGINT while the workers decode: exit 130, no traceback, no worker (or handover folder) left behind."""
    many = tmp_path / "many"
    many.mkdir()
    for i in range(40):
        os.symlink(bikes(), many / f"v{i:02d}.mp4")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsn_cli", "predict", str(many), "--model", str(tiny_export.dir), "--decode-workers",
         "2", "--seg-num", "25", "--crops", "10", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while len(children(proc.pid)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    kids = children(proc.pid)
    assert len(kids) >= 2 and proc.poll() is None, "the decode workers never started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Error" not in err, err
    assert err.rstrip().endswith("interrupted"), err[-500:]  # said, not a silent exit
    deadline = time.monotonic() + 30  # the resource tracker leaves when it sees its parent's pipe close
    while any(running(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [k for k in kids if running(k)], "a child process outlived the run"
    assert not glob.glob(f"/dev/shm/tsn-predict-{proc.pid}-*"), "the run left its handover folder behind"

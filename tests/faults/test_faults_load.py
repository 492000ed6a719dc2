"""Faults under load: `tsn predict` over 500 small videos with bounded memory (peak RSS reported), and a
DataLoader whose worker dies or fails mid-epoch gives a clear error instead of a hang or a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers_hardening import trained

pytestmark = pytest.mark.faults


def _tiny_videos(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        vw = cv2.VideoWriter(str(folder / f"v{i:04d}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 24))
        base = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        for k in range(8):
            vw.write(np.roll(base, k, axis=1))
        vw.release()


def _peak_rss_mb(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run `tsn ARGS` as the only child of a fresh interpreter; its RUSAGE_CHILDREN maxrss is tsn's peak RSS."""
    code = textwrap.dedent(
        """
        import json, resource, subprocess, sys
        p = subprocess.run([sys.executable, "-m", "tsn_cli", *sys.argv[1:]], capture_output=True, text=True)
        print(json.dumps({"rc": p.returncode, "rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                          "out": p.stdout, "err": p.stderr[-4000:]}))
        """
    )
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    doc = json.loads(p.stdout)
    return doc["rss_kb"] / 1024, doc


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("load_model"))


def test_predict_500_videos_bounded_memory(model, tmp_path):
    _tiny_videos(tmp_path / "many", 500)
    _tiny_videos(tmp_path / "few", 10)
    export = str(model / "out" / "export")
    t0 = time.time()
    few_mb, few = _peak_rss_mb(["predict", str(tmp_path / "few"), "--model", export, "--json", "--top-k", "1"])
    t1 = time.time()
    many_mb, many = _peak_rss_mb(["predict", str(tmp_path / "many"), "--model", export, "--json", "--top-k", "1"])
    t2 = time.time()
    assert few["rc"] == 0 and many["rc"] == 0, many["err"]
    res = json.loads(many["out"])
    assert len(res) == 500 and all("error" not in r for r in res)
    report = {"videos": 500, "peak_rss_mb": round(many_mb, 1), "peak_rss_mb_10_videos": round(few_mb, 1),
              "seconds": round(t2 - t1, 1), "seconds_10_videos": round(t1 - t0, 1)}
    print("PREDICT_LOAD", json.dumps(report))
    # Memory must not grow with the number of inputs: 50x the videos, at most +150 MB, and < 2 GB overall.
    assert many_mb < few_mb + 150, report
    assert many_mb < 2048, report


_LOADER_SCRIPT = """
import os, sys
from tsn_cli.data.dataset import TSNDataset, build_loader
from tsn_cli.data.lists import VideoRecord
from tsn_cli.data.transforms import TrainTransform
from tsn_cli.errors import TsnError
video, mode = sys.argv[1], sys.argv[2]
recs = [VideoRecord(path=video, label=0) for _ in range(16)]
if mode == "bad":
    recs = [VideoRecord(path=video + f".missing{i}", label=0) for i in range(16)]
ds = TSNDataset(recs, "video", 2, TrainTransform(short_side=36, target_size=32), train=True)
if mode == "die":
    orig = type(ds).__getitem__
    calls = [0]
    class Dying(type(ds)):
        def __getitem__(self, key):
            calls[0] += 1
            if calls[0] == 5:  # mid-epoch, in every worker
                os._exit(137)  # as if the OOM killer took the worker
            return orig(self, key)
    ds.__class__ = Dying
n = 0
try:
    for batch in build_loader(ds, 2, False, int(sys.argv[3])):
        n += 1
except TsnError as exc:
    print("TSNERROR", n, str(exc)); sys.exit(2)
except Exception as exc:
    print("OTHER", n, type(exc).__name__, str(exc).splitlines()[0]); sys.exit(3)
print("DONE", n)
"""


@pytest.mark.parametrize("mode,workers", [("die", 2), ("bad", 2), ("bad", 0)])
def test_dataloader_worker_death_or_failure_is_a_clear_error(model, mode, workers):
    video = str(model / "videos" / "c0_v0.avi")
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", _LOADER_SCRIPT, video, mode, str(workers)], capture_output=True,
                       text=True, timeout=120)
    took = time.time() - t0
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert took < 60, took
    if mode == "die":
        assert p.returncode in (2, 3), p.stdout + p.stderr[-2000:]
        assert "exit" in p.stdout.lower() or "died" in p.stdout.lower(), p.stdout
    else:
        assert p.returncode == 2 and "TSNERROR 0" in p.stdout and "replacement samples failed" in p.stdout, \
            p.stdout + p.stderr[-2000:]

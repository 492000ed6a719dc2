"""Faults: SIGKILL and Ctrl-C (SIGINT to the process group, as a terminal does) during frame extraction and
export. Afterwards no output is half-written and the next run finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers_hardening import cli, text, trained
from tests.helpers_prepare import make_ucf_tree
from tsn_cli.prepare.frames import count_frames_on_disk

pytestmark = pytest.mark.faults
FRAMES = 100


def _start(*args, cwd=None):
    e = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="1", GLOG_minloglevel="2")
    return subprocess.Popen([sys.executable, "-m", "tsn_cli", *map(str, args)], cwd=cwd, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def _wait_for(pred, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def _frames_consistent(root: Path) -> int:
    """Every final frame folder is complete and every frame-list line matches the disk. Returns #folders."""
    fr = root / "rawframes"
    finals = [p for p in fr.glob("*/*") if p.is_dir() and ".tmp-" not in p.name] if fr.exists() else []
    for d in finals:
        assert count_frames_on_disk(d) == FRAMES, d
    for lst in root.glob("*_rawframes.txt"):
        for line in lst.read_text().splitlines():
            d, n, _ = line.split()
            assert int(n) == FRAMES == count_frames_on_disk(root / d), (lst, line)
    return len(finals)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_extraction_interrupted_then_resumed(tmp_path, sig):
    root = tmp_path / "ucf"
    make_ucf_tree(root, groups=3, clips=3, frames=FRAMES)
    proc = _start("prepare", "ucf101", root, "--frames", "--workers", "2", "--split", "1")
    fr = root / "rawframes"
    started = _wait_for(lambda: fr.exists() and any(".tmp-" not in p.name for p in fr.glob("*/*")), proc)
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    if not started:
        pytest.skip("extraction finished before the signal could be sent")
    err = err.decode("utf-8", "replace")
    if sig == signal.SIGINT:
        assert proc.returncode in (130, -2), err[-2000:]
        assert "Traceback" not in err, err[-3000:]
    n_before = _frames_consistent(root)
    p = cli("prepare", "ucf101", root, "--frames", "--workers", "2", "--split", "1", "--json")
    o, e = text(p)
    assert p.returncode == 1, e[-2000:]  # the tree has 4 deliberately bad videos
    assert "Traceback" not in e
    n_after = _frames_consistent(root)
    assert n_after == 26 and n_after >= n_before  # 3x3x3 clips, one replaced by an empty file
    assert not [p for p in fr.rglob("*") if ".tmp-" in p.name]
    assert (root / "ucf101_train_split_1_rawframes.txt").is_file()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("faults_model"))


def _export_complete(d: Path) -> bool:
    names = {p.name for p in d.iterdir()}
    return "tsn.yaml" in names and any(n.endswith(".pdiparams") for n in names)


def _staged(folder, name: str) -> bool:
    """Whether an export into folder/name has a non-empty staging folder (`.name.<random>.partial`)."""
    for p in folder.glob(f".{name}.*.partial"):
        try:
            if any(p.iterdir()):
                return True
        except FileNotFoundError:  # removed meanwhile
            pass
    return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_export_interrupted_keeps_old_export_and_reruns(model, tmp_path, sig):
    out = tmp_path / "export"
    p = cli("export", "--weights", model / "out" / "TSN_best.pdparams", "--output", out)
    assert p.returncode == 0, text(p)
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    proc = _start("export", "--weights", model / "out" / "TSN_best.pdparams", "--output", out)
    _wait_for(lambda: _staged(tmp_path, "export"), proc)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    err = err.decode("utf-8", "replace")
    if sig == signal.SIGINT and proc.returncode not in (0,):
        assert proc.returncode in (130, -2), err[-2000:]
        assert "Traceback" not in err, err[-3000:]
        assert not _staged(tmp_path, "export")  # Ctrl-C cleans up its staging folder
    # The previous export is still there and whole (or the new one replaced it completely).
    assert out.is_dir() and _export_complete(out)
    if proc.returncode != 0:
        assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    p = cli("export", "--weights", model / "out" / "TSN_best.pdparams", "--output", out)
    assert p.returncode == 0, text(p)
    assert _export_complete(out) and not _staged(tmp_path, "export")
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".export")]


def test_export_killed_on_first_export_leaves_nothing_half_written(model, tmp_path):
    out = tmp_path / "first"
    proc = _start("export", "--weights", model / "out" / "TSN_best.pdparams", "--output", out)
    _wait_for(lambda: _staged(tmp_path, "first"), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not out.exists() or _export_complete(out)
    p = cli("predict", model / "videos" / "c0_v0.avi", "--model", out)
    assert p.returncode in (0, 2) and "Traceback" not in text(p)[1]

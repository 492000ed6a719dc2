"""Faults: a disk that fills (a small tmpfs), read-only and unwritable output folders, and a worker killed
as the OOM killer would -- a clear one-line error (exit 2 or the bad entries listed), earlier outputs intact,
nothing half-written, and the next run succeeds once the problem is gone."""

from __future__ import annotations

import json
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


def _one_line_error(p, *needles):
    out, err = text(p)
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    assert p.returncode == 2, (p.args, out[-1000:], err[-2000:])
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err[-2000:]
    for n in needles:
        assert n in err.replace("\n", ""), err[-2000:]
    return err


@pytest.fixture()
def tmpfs(tmp_path):
    """A 2 MB tmpfs (root only); yields (path, remount(opts))."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")

    def remount(opts: str):
        subprocess.run(["mount", "-o", f"remount,{opts}", str(mnt)], check=True)

    try:
        yield mnt, remount
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("res_model"))


def _final_frame_dirs(fr: Path):
    return [p for p in fr.glob("*/*") if p.is_dir() and ".tmp-" not in p.name]


def test_disk_full_during_extraction_then_resume(tmp_path, tmpfs):
    mnt, remount = tmpfs
    root = tmp_path / "ucf"
    make_ucf_tree(root, groups=2, clips=3, frames=60)
    p = cli("prepare", "ucf101", root, "--frames", "--frames-dir", mnt / "rawframes", "--workers", "2", "--split", "1",
            "--json")
    out, err = text(p)
    assert "Traceback" not in err, err[-3000:]
    assert p.returncode in (1, 2), err[-2000:]
    both = (out + err).lower()
    assert "no space" in both or "disk full" in both, (out[-2000:], err[-2000:])
    for d in _final_frame_dirs(mnt / "rawframes"):  # whatever was finished is whole
        assert count_frames_on_disk(d) == 60, d
    remount("size=64m")
    p = cli("prepare", "ucf101", root, "--frames", "--frames-dir", mnt / "rawframes", "--workers", "2", "--split", "1",
            "--json")
    out, err = text(p)
    assert p.returncode == 1, err[-2000:]  # only the tree's deliberately bad videos remain
    rep = json.loads(out)
    assert rep["ok"] == len(_final_frame_dirs(mnt / "rawframes"))
    assert not [x for x in (mnt / "rawframes").rglob("*") if ".tmp-" in x.name]


def test_disk_full_during_export_keeps_nothing_half_written(model, tmpfs):
    mnt, remount = tmpfs
    p = cli("export", "--weights", model / "out" / "TSN_best.pdparams", "--output", mnt / "export")
    _one_line_error(p, "export")
    assert not (mnt / "export").exists()
    assert not list(mnt.iterdir()), list(mnt.iterdir())  # staging folder removed, space given back
    remount("size=128m")
    p = cli("export", "--weights", model / "out" / "TSN_best.pdparams", "--output", mnt / "export")
    assert p.returncode == 0, text(p)


def test_disk_full_during_checkpoint_save(model, tmpfs):
    mnt, _ = tmpfs
    p = cli("train", "--config", model / "cfg.yaml", "--output", mnt / "run", cwd=model)
    err = _one_line_error(p, str(mnt))
    assert "space" in err.lower() or "disk full" in err.lower(), err
    left = [x.name for x in (mnt / "run").iterdir()] if (mnt / "run").exists() else []
    assert not [n for n in left if n.endswith((".pdparams", ".pdopt", ".tmp"))], left


def _cmd(kind, model, out):
    w = model / "out" / "TSN_best.pdparams"
    return {
        "eval": ("eval", "--weights", w, "--output", out / "eval"),
        "export": ("export", "--weights", w, "--output", out / "export"),
        "train": ("train", "--config", model / "cfg.yaml", "--output", out / "run"),
        "scores": ("eval", "--weights", w, "--save-scores", out / "s.npz"),
        "demo": ("prepare", "demo", out / "demo", "--num-classes", "2", "--videos-per-class", "8", "--frames", "4"),
        "lists": ("prepare", "ucf101", model / "ucf", "--out", out / "lists"),
    }[kind]


KINDS = ["eval", "export", "train", "scores", "demo", "lists"]


@pytest.fixture(scope="module")
def model_with_ucf(model):
    if not (model / "ucf").exists():
        make_ucf_tree(model / "ucf", groups=1, clips=1, frames=4)
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_read_only_output_folder(model_with_ucf, tmpfs, kind):
    mnt, remount = tmpfs
    (mnt / "old.txt").write_text("keep me")
    remount("ro")
    p = cli(*_cmd(kind, model_with_ucf, mnt), cwd=model_with_ucf)
    _one_line_error(p, str(mnt))
    assert (mnt / "old.txt").read_text() == "keep me"


@pytest.mark.parametrize("kind", KINDS)
def test_output_path_under_a_regular_file(model_with_ucf, tmp_path, kind):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = cli(*_cmd(kind, model_with_ucf, blocker), cwd=model_with_ucf)
    _one_line_error(p, str(blocker))
    assert blocker.read_text() == "x"


def test_extraction_worker_killed_like_oom(tmp_path):
    """Too many workers for the memory: the OOM killer takes one. Clear error, finished folders intact, resume."""
    root = tmp_path / "ucf"
    make_ucf_tree(root, groups=3, clips=3, frames=100)
    e = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "tsn_cli", "prepare", "ucf101", str(root), "--frames",
                             "--workers", "2", "--split", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, start_new_session=True)
    fr = root / "rawframes"
    t0 = time.time()
    killed = False
    while time.time() - t0 < 60 and proc.poll() is None:
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if kids and fr.exists() and _final_frame_dirs(fr):
            os.kill(int(kids[0]), signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=120)
    if not killed:
        pytest.skip("extraction finished before a worker could be killed")
    err = err.decode("utf-8", "replace")
    assert "Traceback" not in err, err[-3000:]
    assert proc.returncode == 2, err[-2000:]
    assert "worker" in err and "again" in err, err[-2000:]
    for d in _final_frame_dirs(fr):
        assert count_frames_on_disk(d) == 100
    p = cli("prepare", "ucf101", root, "--frames", "--workers", "2", "--split", "1")
    assert p.returncode == 1, text(p)[1][-2000:]
    assert len(_final_frame_dirs(fr)) == 26

"""Crash safety of `tsn train`: SIGKILL mid-epoch or Ctrl-C, then `--resume auto`, must end with exactly the
weights of an uninterrupted run (CPU, workers 0, same seed)."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from tests.helpers_train import make_tiny_data, run_train, weights, write_tiny_config

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = make_tiny_data(root / "data")
    ref_cfg = write_tiny_config(root / "ref.yaml", data, root / "ref", epochs=2)
    proc = run_train("--config", ref_cfg)
    assert proc.returncode == 0, proc.stderr
    return root, data, weights(root / "ref" / "TSN_epoch_00002.pdparams")


def _same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k  # bit-identical, BN statistics included


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(setup):
    root, data, ref = setup
    cfg = write_tiny_config(root / "kill.yaml", data, root / "kill", epochs=2)
    proc = run_train("--config", cfg, fault="SIGKILL:2:1")  # killed after batch 1 of epoch 2
    assert proc.returncode == -signal.SIGKILL
    out = root / "kill"
    assert (out / "TSN_epoch_00001.state.json").is_file() and not (out / "TSN_epoch_00002.pdparams").exists()
    proc = run_train("--config", cfg, "--resume", "auto")
    assert proc.returncode == 0, proc.stderr
    assert "resumed from" in " ".join(proc.stderr.split()) + " ".join(proc.stdout.split())
    _same(weights(out / "TSN_epoch_00002.pdparams"), ref)


def test_ctrl_c_saves_the_exact_mid_epoch_state_and_resume_continues(setup):
    root, data, ref = setup
    cfg = write_tiny_config(root / "int.yaml", data, root / "int", epochs=2)
    proc = run_train("--config", cfg, fault="SIGINT:2:2")  # Ctrl-C after batch 2 of epoch 2
    assert proc.returncode == 130, proc.stderr
    out = root / "int"
    meta = json.loads((out / "TSN_interrupted.state.json").read_text())
    assert (meta["epoch"], meta["step"]) == (1, 2) and meta["partial"]["n"] == 8
    assert "Traceback" not in proc.stderr and "interrupted at epoch 2, batch 2/3" in " ".join(proc.stderr.split())
    proc = run_train("--config", cfg, "--resume", "auto")
    assert proc.returncode == 0, proc.stderr
    _same(weights(out / "TSN_epoch_00002.pdparams"), ref)
    assert not (out / "TSN_interrupted.pdparams").exists()  # superseded by the epoch checkpoint
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(line) for line in (root / "ref" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] == pytest.approx(ref_rows[-1]["loss"], rel=1e-6) and rows[-1]["clips"] == 12


def test_a_mid_epoch_checkpoint_from_before_the_row_names_still_resumes_exactly(setup):
    """A TSN_interrupted.state.json written before its running sums were named like the epoch row (c1/c5 for
    top1/top5) resumes to the weights and epoch row of an uninterrupted run."""
    root, data, ref = setup
    cfg = write_tiny_config(root / "old.yaml", data, root / "old", epochs=2)
    assert run_train("--config", cfg, fault="SIGINT:2:2").returncode == 130
    state = root / "old" / "TSN_interrupted.state.json"
    meta = json.loads(state.read_text())
    assert set(meta["partial"]) == {"loss", "top1", "top5", "n", "wait", "busy"}
    meta["partial"]["c1"], meta["partial"]["c5"] = meta["partial"].pop("top1"), meta["partial"].pop("top5")
    state.write_text(json.dumps(meta))
    proc = run_train("--config", cfg, "--resume", "auto")
    assert proc.returncode == 0, proc.stderr
    _same(weights(root / "old" / "TSN_epoch_00002.pdparams"), ref)
    row = json.loads((root / "old" / "metrics.jsonl").read_text().splitlines()[-1])
    ref_row = json.loads((root / "ref" / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("loss", "top1", "top5"):
        assert row[key] == pytest.approx(ref_row[key], rel=1e-6), key


def test_external_sigterm_stops_cleanly_with_a_resumable_checkpoint(setup):
    """A real signal from outside (what a scheduler or the distributed launcher sends) at an arbitrary moment."""
    import os
    import subprocess
    import sys
    import time

    from tests.helpers_cli import REPO
    from tsn_cli.engine.checkpoints import find_latest_checkpoint

    root, data, _ = setup
    out = root / "term"
    cfg = write_tiny_config(root / "term.yaml", data, out, epochs=30)
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOG_minloglevel="2")
    proc = subprocess.Popen([sys.executable, "-m", "tsn_cli", "train", "--config", str(cfg), "--json"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "TSN_epoch_00001.state.json").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert json.loads(stdout)["interrupted"] is True and "Traceback" not in stderr
    latest = find_latest_checkpoint(out)
    meta = json.loads(latest.with_suffix(".state.json").read_text())
    assert meta["epoch"] >= 1 and weights(latest)["head.fc.weight"].shape == (512, 3)

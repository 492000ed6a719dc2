"""Real data-parallel training: 2 CPU processes (gloo) via `paddle.distributed.launch -m tsn_cli train`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers_cli import REPO
from tests.helpers_train import make_tiny_data, weights, write_tiny_config


@pytest.mark.slow
def test_two_processes_train_with_identical_weights(tmp_path):
    data = make_tiny_data(tmp_path / "data", per_class_train=4)
    out = tmp_path / "out"
    cfg = write_tiny_config(tmp_path / "c.yaml", data, out, epochs=1, batch_size=2)
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOG_minloglevel="2")
    # the harness runs `tsn train`, then every rank writes its parameter digest (the launcher runs a .py path)
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--host", "127.0.0.1", "--nproc_per_node", "2",
           "--log_dir", str(tmp_path / "log"), "tests/train_harness.py", "--digest", str(tmp_path / "digest"),
           "train", "--config", str(cfg), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    logs = "".join(p.read_text(errors="replace") for p in sorted((tmp_path / "log").glob("workerlog.*")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs[-3000:]
    d0 = (tmp_path / "digest" / "rank0.sha256").read_text()
    d1 = (tmp_path / "digest" / "rank1.sha256").read_text()
    assert d0 == d1  # gradients all-reduced: both ranks hold the same parameters
    # rank 0 alone wrote; metrics are all-reduced over the sharded data (12 clips, 6 per rank, 3 steps each)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["clips"] == 12
    meta = json.loads((out / "TSN_epoch_00001.state.json").read_text())
    assert meta["steps_per_epoch"] == 3
    import hashlib

    import numpy as np

    from tsn_cli.model.tsn import TSN

    trainable = sorted(n for n, p in TSN(depth=18, num_classes=3).named_parameters() if not p.stop_gradient)
    w = weights(out / "TSN_epoch_00001.pdparams")
    h = hashlib.sha256()
    for k in trainable:
        h.update(k.encode())
        h.update(np.ascontiguousarray(w[k]).tobytes())
    assert h.hexdigest() == d0  # the checkpoint holds those weights

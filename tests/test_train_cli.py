"""`tsn train` end to end on a tiny model: outputs, curves, metrics, compact table, --dry-run, NaN guard,
VisualDL logging (with a stand-in module)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from tests.helpers_train import make_tiny_data, run_train, weights, write_tiny_config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("train_data"))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One real 2-epoch run with validation (shared by the output checks)."""
    root = tmp_path_factory.mktemp("train_run")
    cfg = write_tiny_config(root / "c.yaml", data, root / "out", epochs=2, val=True)
    proc = run_train("--config", cfg, env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root / "out", proc


def test_train_writes_checkpoints_config_and_labels(trained):
    out, _ = trained
    for stem in ("TSN_epoch_00001", "TSN_epoch_00002", "TSN_best"):
        for suffix in (".pdparams", ".pdopt", ".state.json"):
            assert (out / f"{stem}{suffix}").is_file(), stem + suffix
    assert (out / "config.yaml").is_file() and (out / "label_names.txt").read_text().count("\n") == 3
    w = weights(out / "TSN_epoch_00002.pdparams")
    assert w["head.fc.weight"].shape == (512, 3) and all(np.isfinite(v).all() for v in w.values())
    meta = json.loads((out / "TSN_epoch_00002.state.json").read_text())
    assert meta["epoch"] == 2 and meta["step"] == 0 and meta["best_epoch"] in (1, 2)
    assert not list(out.glob(".*.tmp"))


def test_metrics_jsonl_and_curves_png(trained):
    out, _ = trained
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert {"loss", "top1", "top5", "lr", "clips_per_s", "data_wait", "bad_samples", "val_top1"} <= set(r)
        assert r["bad_samples"] == 0 and r["clips"] == 12 and 0 <= r["data_wait"] <= 1
    assert rows[0]["lr"] == pytest.approx(0.01) and rows[1]["lr"] == pytest.approx(0.001)  # boundary at epoch 1
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_epoch_table_fits_80_columns(trained):
    _, proc = trained
    table_lines = [ln for ln in proc.stderr.splitlines() + proc.stdout.splitlines()
                   if ln.lstrip().startswith(("ep ", "1 ", "2 "))]
    assert any("val1" in ln for ln in table_lines), proc.stderr
    assert all(len(ln) <= 80 for ln in proc.stderr.splitlines() + proc.stdout.splitlines())


def test_start_and_summary_tables_are_readable(trained):
    """The run uses its config file unchanged: one line instead of the 50-key table; the summary tables show
    formatted numbers (no 0.16666666666666666, no None)."""
    import re

    _, proc = trained
    text = proc.stdout + proc.stderr
    assert "as is (--verbose shows every key)" in " ".join(text.split()) and "model.fc_std" not in text
    assert "Training finished" in proc.stdout and "best_top1" in proc.stdout
    assert not re.search(r"\d\.\d{6,}", text) and "None" not in text


def test_dry_run_reports_size_and_flops_and_writes_nothing(data, tmp_path):
    cfg = write_tiny_config(tmp_path / "c.yaml", data, tmp_path / "out")
    proc = run_train("--config", cfg, "--dry-run", "--json", "--amp", "fp16")
    assert proc.returncode == 0, proc.stderr
    assert "--amp needs a GPU; running in float32" in " ".join(proc.stderr.split())
    info = json.loads(proc.stdout)
    assert info["dry_run"] is True and info["train_videos"] == 12 and info["steps_per_epoch"] == 3
    assert 11_000_000 < info["params"] < 11_400_000 and info["gflops_per_clip"] > 0
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.pdparams"))


def test_exploding_lr_stops_with_a_clear_message(data, tmp_path):
    cfg = write_tiny_config(tmp_path / "c.yaml", data, tmp_path / "out", epochs=1)
    proc = run_train("--config", cfg, "-o", "train.lr=1e30")
    assert proc.returncode != 0
    msg = " ".join((proc.stdout + proc.stderr).split())
    assert "loss is" in msg and "epoch 1, step" in msg and "Traceback" not in msg
    assert not list((tmp_path / "out").glob("*.pdparams"))


def test_nan_loss_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    """In-process: the loss turns NaN at epoch 2, batch 2 -> TsnError naming it; epoch 1's checkpoint intact."""
    import paddle.nn.functional as F

    from tsn_cli.config import load_config
    from tsn_cli.engine.checkpoints import find_latest_checkpoint
    from tsn_cli.engine.train import Trainer
    from tsn_cli.errors import TsnError

    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", data, tmp_path / "out", epochs=2))
    real, calls = F.cross_entropy, {"n": 0}

    def poisoned(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] == 5 else loss  # 3 batches per epoch: epoch 2, step 2

    monkeypatch.setattr(F, "cross_entropy", poisoned)
    last_good = r"last good checkpoint, .*TSN_epoch_00001\.pdparams, is intact"
    with pytest.raises(TsnError, match=r"loss is nan at epoch 2, step 2/3.*" + last_good):
        Trainer(cfg).run()
    out = tmp_path / "out"
    assert find_latest_checkpoint(out) == out / "TSN_epoch_00001.pdparams"
    assert not (out / "TSN_epoch_00002.pdparams").exists()
    assert all(np.isfinite(v).all() for v in weights(out / "TSN_epoch_00001.pdparams").values())


def test_visualdl_scalars_when_installed(data, tmp_path, monkeypatch):
    """A stand-in `visualdl` module records what the trainer logs."""
    from tsn_cli.config import load_config
    from tsn_cli.engine.train import Trainer

    logged, closed = [], []

    class LogWriter:
        def __init__(self, logdir):
            self.logdir = logdir

        def add_scalar(self, tag, step, value):
            logged.append((tag, step, value))

        def close(self):
            closed.append(self.logdir)

    monkeypatch.setitem(sys.modules, "visualdl", types.SimpleNamespace(LogWriter=LogWriter))
    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", data, tmp_path / "out", epochs=1, batch_size=6))
    res = Trainer(cfg).run()
    assert res.epochs_done == 1
    tags = {t for t, s, v in logged}
    assert {"train/loss", "train/top1", "train/lr"} <= tags and all(s == 1 for t, s, v in logged)
    assert closed == [str(Path(tmp_path / "out" / "vdl"))]


def test_keep_last_leaves_only_the_latest_epoch_checkpoint_and_the_best(data, tmp_path):
    cfg = write_tiny_config(tmp_path / "c.yaml", data, tmp_path / "out", epochs=3, val=True, save_interval=1)
    proc = run_train("--config", cfg, "--keep-last", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    sets = [f"{stem}{suffix}" for stem in ("TSN_best", "TSN_epoch_00003") for suffix in (".pdopt", ".pdparams",
                                                                                          ".state.json")]
    files = ["config.yaml", "curves.png", "label_names.txt", "metrics.jsonl", *sets]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(files)
    assert json.loads(proc.stdout)["last_checkpoint"] == str(tmp_path / "out" / "TSN_epoch_00003.pdparams")
    assert "keep_last: 1" in (tmp_path / "out" / "config.yaml").read_text()  # recorded: a resume keeps pruning
    bad = run_train("--config", cfg, "--keep-last", "0", "--overwrite")
    assert bad.returncode == 2 and "--keep-last" in bad.stderr and "Traceback" not in bad.stderr

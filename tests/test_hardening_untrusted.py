"""Hardening: weights files are untrusted. A pickle payload in a .pdparams/.pdopt never runs, through every
CLI path that loads weights; the command stops with one line naming the file (exit 2), no traceback."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers_hardening import cli, malicious_pickle, text, trained


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("untrusted_model"))


def _check(p, marker, name):
    out, err = text(p)
    assert not marker.exists(), "payload ran!"
    assert p.returncode == 2, (p.args, out, err)
    assert "Traceback" not in err
    assert name in err, err


def test_malicious_weights_never_run_in_any_command(model, tmp_path):
    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    shutil.copytree(model / "out", run, ignore=shutil.ignore_patterns("export"))
    evil = malicious_pickle(run / "evil.pdparams", marker)
    cfg = ["--config", model / "cfg.yaml"]
    cases = [
        ("train", *cfg, "--weights", evil, "--output", tmp_path / "o1"),
        ("train", *cfg, "--pretrained", evil, "--output", tmp_path / "o2"),
        ("eval", "--weights", evil),
        ("export", "--weights", evil, "--output", tmp_path / "exp"),
        ("predict", model / "videos" / "c0_v0.avi", "--weights", evil),
    ]
    for args in cases:
        _check(cli(*args, cwd=model), marker, "evil.pdparams")
    assert not (tmp_path / "exp").exists()


def test_malicious_resume_checkpoint_and_optimizer_state(model, tmp_path):
    marker = tmp_path / "PWNED"
    for target in ("TSN_epoch_00001.pdparams", "TSN_epoch_00001.pdopt"):
        run = tmp_path / target.replace(".", "_")
        shutil.copytree(model / "out", run, ignore=shutil.ignore_patterns("export"))
        malicious_pickle(run / target, marker)
        for resume in ("auto", str(run / "TSN_epoch_00001.pdparams")):
            p = cli("train", "--config", model / "cfg.yaml", "--output", run, "--epochs", "2", "--resume", resume,
                    cwd=model)
            _check(p, marker, target)

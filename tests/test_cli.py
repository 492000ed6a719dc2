"""The CLI surface: help for every command, version, lazy paddle import, one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tsn_cli import __version__

COMMANDS = [[], ["train"], ["eval"], ["export"], ["predict"], ["prepare"], ["prepare", "ucf101"], ["prepare", "k400"], ["prepare", "demo"], ["prepare", "check"]]


def test_help_does_not_import_paddle():
    code = "import sys; from tsn_cli.cli import app; from typer.testing import CliRunner; r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; print('paddle' in sys.modules, 'cv2' in sys.modules, 'decord' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "tsn")
def test_every_command_has_help(tsn, args):
    proc = tsn(*args, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout and "--help" in proc.stdout


def test_main_options_are_documented(tsn):
    out = tsn("train", "--help").stdout
    for flag in ["--config", "--override", "--seg-num", "--depth", "--target-size", "--num-classes", "--epochs", "--batch-size", "--lr", "--train-list", "--val-list", "--data-root", "--pretrained", "--weights", "--output", "--device", "--workers", "--seed", "--resume", "--dry-run"]:
        assert flag in out, flag


def test_version(tsn):
    proc = tsn("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"tsn {__version__}"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "-o", "model.segnum=3"], "unknown key 'model.segnum'"),
        (["train", "--depth", "20"], "option --depth: model.depth: must be one of"),
        (["train", "--config", "nope.yaml"], "nope.yaml: config file not found"),
        (["train", "--train-list", "missing_list.txt", "--device", "cpu"], "data.train_list: file not found: missing_list.txt"),
        (["eval", "--weights", "missing.pdparams"], "--weights: file not found: missing.pdparams"),
    ],
)
def test_config_errors_are_one_line_exit_2(tsn, tmp_path, args, needle):
    proc = tsn(*args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert needle in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    assert sum(l.startswith("error:") for l in proc.stderr.splitlines()) == 1


def test_debug_shows_the_traceback(tsn, tmp_path):
    proc = tsn("--debug", "train", "-o", "model.segnum=3", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr

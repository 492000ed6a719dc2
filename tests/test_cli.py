"""The CLI surface: help for every command, version, lazy paddle import, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tsn_cli import __version__

COMMANDS = [[], ["train"], ["eval"], ["export"], ["predict"], ["prepare"], ["prepare", "ucf101"], ["prepare", "k400"],
            ["prepare", "demo"], ["prepare", "check"]]


def test_help_does_not_import_paddle():
    code = ("import sys; from tsn_cli.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "print('paddle' in sys.modules, 'cv2' in sys.modules, 'decord' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]


# What help and completion must not load (issue 13 item 6: `tsn --help` paid 4.8x a bare `import typer, rich`
# for the pydantic config models). Typer itself imports pydantic once a subcommand is parsed (it coerces the
# root options through pydantic), so pydantic is forbidden only for `tsn --help`; our config never loads.
HEAVY = {"tsn_cli.config", "yaml", "paddle", "cv2", "numpy", "decord", "rich.progress", "tsn_cli.ui"}
# the CLI layer alone: no library module (config, data, model, engine, deploy, prepare) is imported for help
# (engine.runconfig: only its flag table and signatures, imported by cli/common; the config itself loads lazily)
CLI_ONLY = {"tsn_cli", "tsn_cli.errors", "tsn_cli.cli", "tsn_cli.engine", "tsn_cli.engine.runconfig",
            *(f"tsn_cli.cli.{m}" for m in ("common", "evaluate", "export", "predict", "prepare", "train", "weights"))}
_MODULES_AT_EXIT = ("import atexit, json, sys; "
                    "atexit.register(lambda: print('MODULES', json.dumps(sorted(sys.modules)), file=sys.stderr)); "
                    "sys.argv = ['tsn', *sys.argv[1:]]; from tsn_cli.cli import main; main()")
COMPLETE = {"_TSN_COMPLETE": "complete_bash", "COMP_WORDS": "tsn train --se", "COMP_CWORD": "2"}


@pytest.mark.parametrize("args, env, forbidden", [
    (["--help"], {}, HEAVY | {"pydantic"}),
    (["train", "--help"], {}, HEAVY),
    (["eval", "--help"], {}, HEAVY),
    (["prepare", "demo", "--help"], {}, HEAVY),
    ([], COMPLETE, HEAVY | {"rich.console"}),
], ids=["tsn --help", "train --help", "eval --help", "prepare demo --help", "completion"])
def test_help_and_completion_import_only_the_cli(args, env, forbidden):
    proc = subprocess.run([sys.executable, "-c", _MODULES_AT_EXIT, *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert ("--seg-num" in proc.stdout) if env else ("Usage" in proc.stdout)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES ")][-1]
    modules = set(json.loads(line.split(" ", 1)[1]))
    assert not forbidden & modules, sorted(forbidden & modules)
    assert {m for m in modules if m.startswith("tsn_cli")} <= CLI_ONLY


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "tsn")
def test_every_command_has_help(tsn, args):
    proc = tsn(*args, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout and "--help" in proc.stdout


def test_main_options_are_documented(tsn):
    out = tsn("train", "--help").stdout
    for flag in ["--config", "--override", "--seg-num", "--depth", "--target-size", "--num-classes", "--epochs",
                 "--batch-size", "--lr", "--train-list", "--val-list", "--data-root", "--pretrained", "--weights",
                 "--output", "--device", "--workers", "--seed", "--resume", "--dry-run"]:
        assert flag in out, flag


def test_version(tsn):
    proc = tsn("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"tsn {__version__}"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "-o", "model.segnum=3"], "unknown key 'model.segnum'"),
        (["train", "--depth", "20"], "--depth: must be one of 18, 34, 50, 101 or 152, got 20 (model.depth)"),
        (["train", "--config", "nope.yaml"], "nope.yaml: config file not found"),
        (["train", "--train-list", "missing_list.txt", "--device", "cpu"],
         "data.train_list: file not found: missing_list.txt"),
        (["eval", "--weights", "missing.pdparams"], "--weights: file not found: missing.pdparams"),
    ],
)
def test_config_errors_are_one_line_exit_2(tsn, tmp_path, args, needle):
    proc = tsn(*args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert needle in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    assert sum(ln.startswith("error:") for ln in proc.stderr.splitlines()) == 1


def test_debug_shows_the_traceback(tsn, tmp_path):
    proc = tsn("--debug", "train", "-o", "model.segnum=3", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_short_options_mean_the_same_in_every_command():
    """`-o` is --override everywhere (predict's --output once took it); no short option has two meanings."""
    import typer.main

    from tsn_cli.cli import app

    meaning: dict[str, set[str]] = {}

    def walk(cmd) -> None:
        for p in cmd.params:
            longs = [o for o in p.opts if o.startswith("--")]
            for short in (o for o in p.opts if not o.startswith("--")):
                meaning.setdefault(short, set()).update(longs)
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    assert meaning["-o"] == {"--override"}
    assert {s: m for s, m in meaning.items() if len(m) > 1} == {}

"""Shared test fixtures: a tiny demo dataset (UCF101 layout) and a quick CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("GLOG_minloglevel", "2")

REPO = Path(__file__).resolve().parents[1]


def run_tsn(*args, cwd=None, check=False, timeout=600, env=None):
    """Run the real `tsn` CLI in a subprocess (as a user would); returns CompletedProcess with text output."""
    e = dict(os.environ)
    e["COLUMNS"] = "200"
    e.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "tsn_cli", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e)
    if check and proc.returncode != 0:
        raise AssertionError(f"tsn {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tsn():
    return run_tsn


@pytest.fixture(scope="session")
def paddle():
    """Paddle imported the way tsn does it (threads set, start-up noise silenced), on the CPU."""
    from tsn_cli.engine.device import import_paddle

    p = import_paddle()
    p.set_device("cpu")
    return p

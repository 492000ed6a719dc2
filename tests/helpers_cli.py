"""The repo root and a runner for the real `tsn` CLI (in a subprocess, as a user would run it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_tsn(*args, cwd=None, check=False, timeout=600, env=None):
    """Run the real `tsn` CLI in a subprocess (as a user would); returns CompletedProcess with text output."""
    e = dict(os.environ)
    e["COLUMNS"] = "200"
    e.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "tsn_cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=e)
    if check and proc.returncode != 0:
        cmd = " ".join(map(str, args))
        raise AssertionError(f"tsn {cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc

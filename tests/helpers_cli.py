"""The repo root and a runner for the real `tsn` CLI (in a subprocess, as a user would run it)."""

from __future__ import annotations

import atexit
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Environment variables a `tsn` run reads while it runs (not at interpreter start-up): runs that set only these
# may go through the warm parent (tests/zygote.py); any other variable gets a fresh interpreter.
RUNTIME_ENV = {"COLUMNS", "TSN_CACHE", "TSN_WEIGHTS_MIRROR", "TSN_WEIGHTS_TABLE", "TSN_FRAME_ACCESS",
               "TSN_VIDEO_TIMEOUT"}
# Variables read at start-up that a run may change: such runs go to a warm parent started with those values.
STARTUP_ENV = {"OMP_NUM_THREADS", "GLOG_minloglevel"}
# TSN_TESTS_FRESH=1 runs every `tsn` in a fresh interpreter (slower; what the warm parent stands in for).
FRESH = os.environ.get("TSN_TESTS_FRESH", "") == "1"


def run_tsn(*args, cwd=None, check=False, timeout=600, env=None, text=True, umask=None):
    """Run the real `tsn` CLI in a child process (as a user would), under `umask` if given (else this process's);
    returns CompletedProcess with text output (bytes with `text=False`).

    The child is forked from a warm parent that has imported Paddle (tests/zygote.py), unless `env` changes a
    variable read at start-up or TSN_TESTS_FRESH=1: then it is a fresh `python -m tsn_cli`."""
    e = dict(os.environ)
    e["COLUMNS"] = "200"
    e.update(env or {})
    argv = [str(a) for a in args]
    startup = {k: v for k, v in (env or {}).items() if k not in RUNTIME_ENV and os.environ.get(k) != v}
    if not FRESH and set(startup) <= STARTUP_ENV:
        proc = _warm(startup).run(argv, cwd, e, timeout, text, umask)
    else:
        proc = subprocess.run([sys.executable, "-m", "tsn_cli", *argv], cwd=cwd, capture_output=True, text=text,
                              timeout=timeout, env=e, preexec_fn=None if umask is None else (lambda: os.umask(umask)))
    if check and proc.returncode != 0:
        cmd = " ".join(argv)
        raise AssertionError(f"tsn {cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class _Warm:
    """A warm parent of this test process, with `startup` added to its environment (started on first use, ended
    at exit)."""

    def __init__(self, startup: dict):
        self.dir = tempfile.mkdtemp(prefix="tsn-zygote-")
        self.sock = os.path.join(self.dir, "s")
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, **startup, COLUMNS="200", PYTHONPATH=path)
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.zygote", self.sock], cwd=REPO, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the warm tsn parent (tests/zygote.py) did not start")
        atexit.register(self.close)

    def run(self, argv, cwd, env, timeout, text=True, umask=None) -> subprocess.CompletedProcess:
        out, err = (os.path.join(self.dir, f"{threading.get_ident()}-{os.urandom(4).hex()}.{s}") for s in "oe")
        mask = os.umask(0) if umask is None else umask
        if umask is None:
            os.umask(mask)
        req = {"args": argv, "cwd": str(cwd or os.getcwd()), "env": env, "umask": mask, "stdout": out, "stderr": err}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.sock)
            s.sendall(json.dumps(req).encode() + b"\n")
            fh = s.makefile("r")
            pid = json.loads(fh.readline())["pid"]
            s.settimeout(timeout)
            try:
                rc = json.loads(fh.readline())["rc"]
            except (TimeoutError, socket.timeout):
                os.kill(pid, 9)
                raise subprocess.TimeoutExpired(["tsn", *argv], timeout) from None
        try:
            stdout, stderr = (Path(p).read_text(errors="replace") if text else Path(p).read_bytes() for p in (out, err))
        finally:
            for p in (out, err):
                os.unlink(p)
        return subprocess.CompletedProcess(["tsn", *argv], rc, stdout, stderr)

    def close(self):
        self.proc.kill()
        self.proc.wait()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


_WARM: dict = {}
_LOCK = threading.Lock()


def _warm(startup: dict) -> _Warm:
    key = tuple(sorted(startup.items()))
    with _LOCK:
        if key not in _WARM or _WARM[key].proc.poll() is not None:
            _WARM[key] = _Warm(startup)
        return _WARM[key]


def children(pid: int) -> list[int]:
    """The pids of the live children of process `pid`."""
    out = []
    for f in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            out += [int(c) for c in open(f).read().split()]
        except OSError:
            pass
    return out


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting for its reaper is not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

"""A warm parent for the tests' `tsn` runs: it imports Paddle and tsn once, then forks one child per run.

`import paddle` alone costs 2-3 s of one core, and the suite runs `tsn` several hundred times: most of its time
went into that import. `tests.helpers_cli.run_tsn` sends each run here (over a Unix socket) instead of starting a
new interpreter; the child sets the run's working directory, environment, umask and arguments, writes its
stdout/stderr to the files the caller reads, runs `tsn_cli.cli.main()` and exits with its code, as a fresh
`python -m tsn_cli` would. Nothing has run in this parent but imports (no Paddle op, no OpenMP region, no decoder
opened), so each child starts from the state a fresh process has after its imports.

Protocol, one connection per run: the caller sends one JSON line {args, cwd, env, umask, stdout, stderr}; this
process answers {"pid": N} when the child is forked and {"rc": code} when it has ended.
Runs that depend on what is read at interpreter start-up (thread counts, Paddle flags) never come here: see
`run_tsn`.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import sys


def _child(req: dict, listener: socket.socket, conns: list) -> None:
    """Run one `tsn` command in this forked child and leave with its exit code; never returns."""
    code = 1
    try:
        listener.close()
        for c in conns:
            c.close()
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        os.umask(req["umask"])
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        sys.argv = ["tsn", *req["args"]]
        from tsn_cli import ui

        # rich reads COLUMNS, TERM, NO_COLOR... when a Console is made: make the two consoles again for this run
        ui.console.__init__(stderr=False, highlight=False, soft_wrap=False)
        ui.err_console.__init__(stderr=True, highlight=False)
        from tsn_cli.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - as the interpreter does: the traceback, exit 1
            import traceback

            traceback.print_exc()
            code = 1
        import atexit

        atexit._run_exitfuncs()  # what a normal interpreter exit runs (multiprocessing joins its children)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(path: str) -> None:
    """Import what `tsn` runs import, then fork a child for every request on the Unix socket `path`."""
    from tsn_cli.runtime import import_paddle

    import_paddle()
    import cv2  # noqa: F401
    import decord  # noqa: F401

    import tsn_cli.cli  # noqa: F401
    import tsn_cli.config  # noqa: F401
    import tsn_cli.data.dataset  # noqa: F401
    import tsn_cli.deploy.export  # noqa: F401
    import tsn_cli.deploy.predict  # noqa: F401
    import tsn_cli.engine.evaluate  # noqa: F401
    import tsn_cli.engine.train  # noqa: F401
    import tsn_cli.ui  # noqa: F401

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    parent = os.getppid()
    running: dict[int, socket.socket] = {}
    print("ready", flush=True)
    while os.getppid() == parent:  # the test process is gone: so are we
        for _key, _ in sel.select(timeout=0.02):
            conn, _ = listener.accept()
            with conn.makefile("r") as fh:
                line = fh.readline()
            if not line:
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                _child(json.loads(line), listener, list(running.values()) + [conn])
            running[pid] = conn
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        while running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = running.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(json.dumps({"rc": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                except OSError:  # the caller gave up (timeout) and closed its end
                    pass
                conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])

"""Decoding across inputs: worker processes decode and preprocess the next inputs while the caller runs the model.

Used by `tsn predict`, `tsn eval --model` and int8 calibration (through `Predictor.prepared`). `workers` processes
are spawned (never forked from a process that holds Paddle's/oneDNN's thread pools: a fork can copy a held lock),
run OpenCV single-threaded, ignore SIGINT (the parent handles Ctrl-C and stops them) and hand each clip over as a
.npy file in /dev/shm (a 25x10 clip at 224 px is 150 MB: a file in RAM is faster than pickling it through a pipe;
the array is pickled when the file cannot be written). Results come back in input order and bit-identical to
decoding in this process; at most `workers + 1` clips are in flight (decoding or waiting), so memory is bounded.
A bad input is that input's error. If the pool cannot start or a worker dies (killed, out of memory), the inputs
not yet handed over are decoded in this process instead. Library callers need the usual
`if __name__ == "__main__":` guard of multiprocessing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import deque
from typing import Callable, Iterator, Optional

import numpy as np

from tsn_cli.runtime import exit_with_parent, stop_pool

# The default never starts more workers than this: each holds a decoder and up to one clip (150 MB at 25x10).
MAX_AUTO_WORKERS = 4


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; all cores where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers(engine_threads: Optional[int], inputs: int) -> int:
    """Decode workers when `--decode-workers` is not given: the cores the engine's math threads leave free (at
    least 1: even on a CPU the engine fills, one worker hides decoding behind inference; at most
    `MAX_AUTO_WORKERS`), no more than the inputs after the first; 0 (decode here) for a single input."""
    if inputs < 2:
        return 0
    free = usable_cores() - int(engine_threads or usable_cores())
    return max(1, min(free, MAX_AUTO_WORKERS, inputs - 1))


def shm_dir() -> str:
    """A private temp folder, in RAM (/dev/shm) when there is one, named after this process (tsn-predict-PID-*):
    what a run left behind can be told from another run's folders."""
    import tempfile

    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix=f"tsn-predict-{os.getpid()}-", dir=base)


def prefetch(items: list, params: dict, workers: int, prepare: Callable) -> Iterator[tuple]:
    """Yield `prepare(item)` -- (item, x, timings, warnings, error) -- for every item, in order.

    `workers` 0 (or a single item): in this thread, one after the other. Otherwise `workers` spawned processes
    each run `Predictor(None, **params)._prepare` for the items after the first (decoded here while they start);
    the clip of an item from a worker arrives with `timings["transfer"]`. Close the generator (or exhaust it) to
    stop the workers: they are cancelled, ended and joined before it returns.
    """
    if workers <= 0 or len(items) < 2:
        for item in items:
            yield prepare(item)
        return
    with _sigint_deferred():
        pool, out_dir = _start_pool(min(workers, len(items) - 1), params)
    # (index, future), oldest first. The first input is decoded here (future None) while the workers start: a
    # spawned worker spends ~0.5-1 s importing before its first video.
    pending: deque = deque([(0, None)])
    nxt = 1
    finished = False
    try:
        while nxt < len(items) or pending:
            with _sigint_deferred():  # a submit may start a worker process
                while pool is not None and nxt < len(items) and len(pending) <= workers:
                    pending.append((nxt, pool.submit(_decode, nxt, items[nxt])))
                    nxt += 1
            if not pending:  # no pool (it did not start, or broke): decode here
                yield prepare(items[nxt])
                nxt += 1
                continue
            i, fut = pending.popleft()
            if fut is None:
                yield prepare(items[i])
                continue
            try:
                res = fut.result()
            except Exception:  # noqa: BLE001 - BrokenProcessPool (a worker died) or a pickling error: redo here
                nxt = i
                pending.clear()
                stop_pool(pool, kill=True)
                pool = None
                continue
            yield _receive(items[i], *res)
        finished = True
    finally:
        if pool is not None:  # joined here, never left to the interpreter's exit hooks (they race closed pipes)
            stop_pool(pool, kill=not finished)  # Ctrl-C, an error, an early close: end workers mid-video
        if out_dir:
            shutil.rmtree(out_dir, ignore_errors=True)


def _start_pool(workers: int, params: dict):
    """(ProcessPoolExecutor, its /dev/shm folder), or (None, None) when processes cannot be made here."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    out_dir = shm_dir()
    try:
        ctx = mp.get_context("spawn")
        return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(params, out_dir)), out_dir
    except (OSError, ImportError, ValueError):  # e.g. no POSIX semaphores: decode in this process
        shutil.rmtree(out_dir, ignore_errors=True)
        return None, None


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C back while worker processes start, then raise it: a parent interrupted while it hands a new
    child its start-up data leaves that child printing "EOFError: Ran out of input". Children start with SIGINT
    blocked (inherited), so a Ctrl-C to the whole process group cannot interrupt their imports either; their
    initialiser then ignores it (the parent stops them)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    got = []
    old = signal.signal(signal.SIGINT, lambda *_: got.append(True))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a SIGINT pending on this thread lands in `got` now
        signal.signal(signal.SIGINT, old)
    if got and callable(old):
        old(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt


def _receive(item, x, timings: dict, warnings: list, error: Optional[str]) -> tuple:
    """A worker's result as `prepare`'s tuple: the clip loaded from its file (and the file removed)."""
    if isinstance(x, str):
        t0 = time.perf_counter()
        file, x = x, np.load(x)
        os.unlink(file)
        timings["transfer"] = time.perf_counter() - t0
    return item, x, timings, warnings, error


_WORKER: dict = {}


def _init(params: dict, out_dir: str) -> None:
    """Worker setup: the engine-less Predictor that decodes, OpenCV and the video decoder on one thread each,
    Ctrl-C left to the parent, gone when the parent is."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    try:
        import cv2

        cv2.setNumThreads(1)  # parallel over processes; the parent's engine uses the other cores
    except Exception:  # noqa: BLE001 - no OpenCV: nothing to tune
        pass
    from tsn_cli.data.access import set_decode_threads
    from tsn_cli.deploy.predict import Predictor

    set_decode_threads(1)  # likewise the video decoder: the workers are the parallelism

    _WORKER["pred"] = Predictor(None, label_names=[], **params)
    _WORKER["dir"] = out_dir


def _decode(i: int, item) -> tuple:
    """Worker task: (clip file or array or None, timings, warnings, error) of one input."""
    _, x, timings, warnings, error = _WORKER["pred"]._prepare(item)
    if x is None:
        return None, timings, warnings, error
    file = os.path.join(_WORKER["dir"], f"{i}.npy")
    try:
        np.save(file, x)
    except OSError:  # /dev/shm full or gone: send the array itself
        if os.path.exists(file):
            os.unlink(file)
        return x, timings, warnings, error
    return file, timings, warnings, error

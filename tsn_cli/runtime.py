"""Importing Paddle the right way for this tool, choosing the device, and stopping worker process pools.

`import paddle` forces one math thread on CPU unless OMP_NUM_THREADS is set first, which makes CPU runs
~1.6x slower; `import_paddle()` sets the thread count before the first import and silences Paddle's start-up
noise. Every module that needs paddle calls this (lazily), so `tsn --help` never imports it.

This module sits below `data`, `model`, `engine` and `deploy` (it imports only `tsn_cli.errors`), so each of
them can set up Paddle without importing a higher layer.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings

_THREADS_SET = False


def cpu_threads() -> int:
    """Threads for math on CPU: TSN_THREADS, else OMP_NUM_THREADS, else all cores."""
    for var in ("TSN_THREADS", "OMP_NUM_THREADS"):
        val = os.environ.get(var, "")
        if val.isdigit() and int(val) > 0:
            return int(val)
    return max(1, os.cpu_count() or 1)


def import_paddle(threads: int | None = None):
    """Import and return `paddle` with `threads` math threads on CPU (default: `cpu_threads()`)."""
    global _THREADS_SET
    n = threads or cpu_threads()
    if "paddle" not in sys.modules:
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("FLAGS_call_stack_level", "0")
    if "paddle" not in sys.modules:
        # Paddle prints an OMP_NUM_THREADS lecture to stderr whenever more than one thread is asked for;
        # we set the count on purpose, so swallow exactly that and pass anything else through.
        buf = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stderr(buf):
            warnings.filterwarnings("ignore", message=".*ccache.*")
            warnings.filterwarnings("ignore", category=UserWarning, module="paddle")
            import paddle  # noqa: F401
        rest = [ln for ln in buf.getvalue().splitlines() if "OMP_NUM_THREADS" not in ln and ln.strip()]
        if rest:
            sys.stderr.write("\n".join(rest) + "\n")
    import paddle

    if not _THREADS_SET or threads:
        try:
            paddle.base.core.set_num_threads(n)
        except Exception:  # older/newer builds without the hook: OMP_NUM_THREADS still applies
            pass
        _THREADS_SET = True
    return paddle


def dist_info() -> tuple[int, int]:
    """(world_size, rank) from the environment `paddle.distributed.launch` sets; (1, 0) in a plain run."""
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1") or 1)
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0") or 0)
    return max(1, world), rank


def gpu_available() -> bool:
    """True when Paddle is compiled with CUDA and at least one GPU is visible."""
    paddle = import_paddle()
    try:
        return bool(paddle.device.is_compiled_with_cuda()) and paddle.device.cuda.device_count() > 0
    except Exception:
        return False


def resolve_device(pref: str = "auto") -> str:
    """Map 'auto' | 'cpu' | 'gpu' | 'gpu:N' to a Paddle device string, and make it current.

    'auto' picks the GPU when there is one. Asking for a GPU that is not there is a clear error.
    """
    from tsn_cli.errors import ConfigError

    paddle = import_paddle()
    pref = (pref or "auto").lower()
    if pref == "auto":
        pref = "gpu" if gpu_available() else "cpu"
    if pref.startswith("gpu"):
        if not gpu_available():
            raise ConfigError(
                "runtime.device: a GPU was asked for but Paddle has no CUDA or sees no GPU "
                "(install paddlepaddle-gpu, or use --device cpu)"
            )
        if pref == "gpu":
            local = os.environ.get("FLAGS_selected_gpus") or os.environ.get("PADDLE_LOCAL_RANK") or "0"
            pref = f"gpu:{local.split(',')[0]}"
    elif pref != "cpu":
        raise ConfigError(f"runtime.device: unknown device {pref!r} (allowed: auto, cpu, gpu, gpu:N)")
    paddle.set_device(pref)
    return pref


def check_gpus(spec: str) -> list[str]:
    """Validate `--gpus 0,1` before handing it to paddle.distributed.launch, which on a CPU build or with too
    few GPUs fails only after pages of output. Returns the ids; a problem is one ConfigError naming the fix."""
    from tsn_cli.errors import ConfigError

    ids = [x.strip() for x in str(spec).split(",")]
    if not all(x.isdigit() for x in ids) or len(set(ids)) != len(ids):
        raise ConfigError(f"--gpus {spec!r}: expected distinct GPU ids separated by commas, e.g. --gpus 0,1")
    paddle = import_paddle()
    if not paddle.device.is_compiled_with_cuda():
        raise ConfigError(
            f"--gpus {spec}: this PaddlePaddle build has no CUDA support; install paddlepaddle-gpu, or drop --gpus "
            "(CPU processes: python -m paddle.distributed.launch --nproc_per_node 2 -m tsn_cli train ...)"
        )
    try:
        count = int(paddle.device.cuda.device_count())
    except Exception:  # a broken driver: the same as no GPU for us
        count = 0
    # the launcher reads the ids as entries of CUDA_VISIBLE_DEVICES when it is set, else as 0..count-1
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
    masked = visible not in ("", "all")
    labels = [x.strip() for x in visible.split(",")][:count] if masked else [str(i) for i in range(count)]
    missing = [x for x in ids if x not in labels]
    if missing:
        seen = f"GPUs {','.join(labels)}" if labels else "no GPU"
        where = " (CUDA_VISIBLE_DEVICES)" if masked else ""
        raise ConfigError(f"--gpus {spec}: GPU {','.join(missing)} not visible; Paddle sees {seen}{where}")
    return ids


def stop_pool(pool, kill: bool) -> None:
    """Cancel what has not started in a `ProcessPoolExecutor` and wait for it to end, after killing its workers if
    `kill` (frame extraction's pool and predict's decode workers).

    Never `shutdown(wait=False)` before the process exits: the pool's management thread may still be running
    when the interpreter's exit hook writes to its wake-up pipe, which by then may be closed ("OSError: [Errno
    9] Bad file descriptor" printed after our one-line error)."""
    if kill:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):  # no public API for this
            try:
                proc.terminate()
            except (OSError, ValueError):  # already gone or closed
                pass
    pool.shutdown(wait=True, cancel_futures=True)



def exit_with_parent(poll: float = 1.0) -> None:
    """End this worker process when its parent dies (a `kill -9` of `tsn`, the OOM killer).

    A pool worker blocked on its task queue never sees the queue close -- it holds a writing end of that pipe
    itself -- so without this it outlives a killed parent for good, with its decoder and clip in memory. A daemon
    thread compares the parent pid every `poll` seconds and leaves with `os._exit` when the worker has been
    re-parented."""
    import threading
    import time

    parent = os.getppid()

    def _watch():
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(1)

    threading.Thread(target=_watch, name="tsn-exit-with-parent", daemon=True).start()

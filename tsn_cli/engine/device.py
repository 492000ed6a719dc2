"""Importing Paddle the right way for this tool, and choosing the device.

`import paddle` forces one math thread on CPU unless OMP_NUM_THREADS is set first, which makes CPU runs
~1.6x slower; `import_paddle()` sets the thread count before the first import and silences Paddle's start-up
noise. Every module that needs paddle calls this (lazily), so `tsn --help` never imports it.
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

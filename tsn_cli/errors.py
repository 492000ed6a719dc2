"""Errors a user can act on, and telling a Ctrl-C from a bad input. The CLI prints errors as one line (no traceback) and
exits with `exit_code`."""


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, at most `limit` characters (its type name when empty):
    library errors (decord, Paddle, pickle) carry long C++ traces that a one-line message must not."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


class TsnError(Exception):
    """A problem with the user's input or environment; `str(err)` is the one-line message."""

    exit_code = 2


class ConfigError(TsnError):
    """A config file, override or flag is wrong (unknown key, wrong type, missing file)."""


class DataError(TsnError):
    """A list file, dataset or video cannot be used as a whole."""


class CheckpointError(TsnError):
    """A weights file is missing, truncated, unsafe or of another architecture."""


class DecodeError(TsnError):
    """One video or frame folder cannot be decoded. Callers usually record it and carry on."""

    exit_code = 1

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


_INTERRUPTED = False


def remember_interrupts() -> None:
    """Make Ctrl-C (SIGINT) leave a flag as well as raise KeyboardInterrupt (see `raise_if_interrupted`).

    A C library that calls back into Python can turn the KeyboardInterrupt into an error of its own: PyAV's
    interrupt callback, which enforces the per-video time budget, makes FFmpeg stop with "Immediate exit
    requested". A per-input `except Exception` would then report one bad video and go on with the others.
    Installed by the CLI entry point; only replaces Python's default handler, in the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return

    def _handler(signum, frame):
        global _INTERRUPTED
        _INTERRUPTED = True
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, _handler)


def raise_if_interrupted(exc: BaseException | None = None) -> None:
    """Raise KeyboardInterrupt when Ctrl-C was pressed: called where a per-item error is about to be reported, so
    an interrupt swallowed by a library is not mistaken for a bad input."""
    if _INTERRUPTED:
        raise KeyboardInterrupt from exc

"""Errors a user can act on. The CLI prints them as one line (no traceback) and exits with `exit_code`."""


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

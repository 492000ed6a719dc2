"""Errors a user can act on. The CLI prints them as one line (no traceback) and exits with `exit_code`."""


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

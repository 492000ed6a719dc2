"""Stopping a training run early, when val top-1 stops improving (`patience_reason`, ``train.patience``), and
cleanly on a signal: the first Ctrl-C (SIGINT) or SIGTERM -- what a scheduler or paddle.distributed.launch sends --
only asks for a stop, which the loop honours at the next optimizer-step boundary by saving a checkpoint; a second
one aborts at once (KeyboardInterrupt; earlier checkpoints stay intact).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional


class StopRequest:
    """The stop flag; `catching()` routes the signals to it while the loop runs."""

    def __init__(self, on_message: Callable[[str], None] = lambda msg: None):
        self.requested = False
        self.on_message = on_message

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.on_message("stopping after this step and saving a checkpoint (Ctrl-C again aborts)")

    @contextmanager
    def catching(self) -> Iterator[None]:
        """Install the handlers (only the main thread can) and restore the previous ones afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, prev in previous.items():
                signal.signal(sig, prev)


def patience_reason(patience: Optional[int], best_epoch: Optional[int], done: int, val_interval: int) -> Optional[str]:
    """Why the run stops early after epoch `done` (1-based), or None: `patience` validations since the best one
    without a better val top-1. A pure function of the epochs (validations fall on multiples of `val_interval`), so
    a resumed run counts the validations before the resume too."""
    if not patience or best_epoch is None or val_interval <= 0 or done % val_interval:
        return None
    since = done // val_interval - best_epoch // val_interval
    if since < patience:
        return None
    return (
        f"early stop (--patience {patience}): val top-1 has not improved for {since} validations "
        f"(best at epoch {best_epoch})"
    )

"""`tsn train` with test-only hooks on the trainer, for the crash and distributed tests.

    python -m tests.train_harness [--fault SIGNAL:EPOCH:BATCH] [--digest DIR] train ARGS...   (cwd: the repo)
    python -m paddle.distributed.launch ... tests/train_harness.py [...] train ARGS...        (the launcher's way)

* ``--fault SIGKILL:2:1``: the process sends itself the signal right after the optimizer step that ends batch 1
  of epoch 2 (both 1-based), from `TrainHooks.on_optimizer_step` -- a crash (SIGKILL) or a Ctrl-C (SIGINT) at
  an exact step;
* ``--digest DIR``: when the run returns, every rank writes ``DIR/rank<N>.sha256`` of its trainable parameters
  (BatchNorm running statistics are per-rank buffers -- as in PaddleVideo, which has no SyncBN for TSN -- so
  they are left out; rank 0's are the ones saved).

Everything else is the real CLI: the harness only wraps `Trainer` before `tsn` builds one.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np


def params_digest(model) -> str:
    """sha256 over the sorted trainable parameters of `model` (names and bytes)."""
    h = hashlib.sha256()
    for k, v in sorted(model.named_parameters()):
        if v.stop_gradient:  # BN _mean/_variance are registered as non-trainable parameters
            continue
        h.update(k.encode())
        h.update(np.ascontiguousarray(v.numpy()).tobytes())
    return h.hexdigest()


def _options(argv: list[str]) -> tuple[dict, list[str]]:
    """The harness's own leading options and the `tsn` arguments after them."""
    opts, rest = {}, list(argv)
    while rest and rest[0] in ("--fault", "--digest"):
        opts[rest[0][2:]], rest = rest[1], rest[2:]
    return opts, rest


def _hooked(trainer_cls, fault: str | None, digest: str | None):
    """`trainer_cls` with the fault hook chained into its hooks and the digest written after `run`."""
    sig = point = None
    if fault:
        name, epoch, batch = fault.split(":")
        sig, point = getattr(signal, name), (int(epoch), int(batch))

    class HookedTrainer(trainer_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            inner = self.hooks.on_optimizer_step

            def on_optimizer_step(epoch: int, batches: int) -> None:
                inner(epoch, batches)
                if (epoch + 1, batches) == point:
                    os.kill(os.getpid(), sig)
                    time.sleep(0.5)  # let the signal arrive (SIGINT sets the stop flag through the handler)

            self.hooks.on_optimizer_step = on_optimizer_step

        def run(self):
            result = super().run()
            if digest:
                Path(digest).mkdir(parents=True, exist_ok=True)
                (Path(digest) / f"rank{self.rank}.sha256").write_text(params_digest(self.model))
            return result

    return HookedTrainer


def main(argv: list[str]) -> None:
    opts, rest = _options(argv)
    from tsn_cli.engine import train

    train.Trainer = _hooked(train.Trainer, opts.get("fault"), opts.get("digest"))
    from tsn_cli.cli import main as tsn

    sys.argv = ["tsn", *rest]
    tsn()


if __name__ == "__main__":
    main(sys.argv[1:])

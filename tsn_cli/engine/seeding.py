"""Seeds of a training run: all randomness is a function of (seed, epoch, step), so a resume needs no RNG state."""

from __future__ import annotations

import numpy as np


def step_seed(seed: int, epoch: int, step: int) -> int:
    """Paddle's generator seed for batch `step` of `epoch` (dropout): a pure function, so resume needs no RNG state."""
    seq = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(step)])
    return int(seq.generate_state(1)[0] & 0x7FFFFFFF)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and paddle."""
    import random

    from tsn_cli.runtime import import_paddle

    random.seed(seed)
    np.random.seed(seed % (2**32))
    import_paddle().seed(seed)

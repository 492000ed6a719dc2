"""What a training run takes and gives back: `TrainHooks` (the callbacks the CLI draws progress with) and
`TrainResult` (what `Trainer.run` returns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from tsn_cli.engine.meter import StepStats


@dataclass
class TrainHooks:
    """Callbacks (the CLI draws progress with them; tests stop a run at a given step); all optional.

    Epochs are 0-based; `on_optimizer_step(epoch, batches)` runs right after an optimizer step, with the batches
    done in that epoch, before the loop checks for a requested stop.
    """

    on_start: Callable[[dict], None] = lambda info: None
    on_epoch_start: Callable[[int, int], None] = lambda epoch, steps: None
    on_step: Callable[[StepStats], None] = lambda s: None
    on_optimizer_step: Callable[[int, int], None] = lambda epoch, batches: None
    on_epoch_end: Callable[[dict], None] = lambda row: None
    on_message: Callable[[str], None] = lambda msg: None


@dataclass
class TrainResult:
    """What a training run produced."""

    output: Path
    epochs_done: int
    best_top1: Optional[float]
    best_epoch: Optional[int]
    last_checkpoint: Optional[Path]
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False
    stop_reason: Optional[str] = None  # why the run ended before train.epochs without an interruption (--patience)

    @property
    def stopped_early(self) -> bool:
        """Whether --patience ended the run before train.epochs."""
        return self.stop_reason is not None

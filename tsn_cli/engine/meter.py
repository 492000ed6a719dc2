"""The running numbers of a training epoch: the sums a mid-epoch checkpoint keeps, what the progress display
shows after each batch (`StepStats`) and the epoch's row in metrics.jsonl."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional


@dataclass
class StepStats:
    """Live numbers of the running epoch (what the progress display shows)."""

    epoch: int
    step: int
    steps: int
    loss: float
    top1: float
    top5: float
    lr: float
    clips_per_s: float
    data_wait: float


@dataclass
class EpochMeter:
    """Running sums of one epoch; loss, top1 and top5 are summed over clips (batch mean x batch clips)."""

    loss: float = 0.0
    top1: float = 0.0
    top5: float = 0.0
    n: float = 0.0  # clips
    wait: float = 0.0  # seconds spent waiting for data
    busy: float = 0.0  # seconds spent computing

    def update(self, loss: float, top1: float, top5: float, n: int) -> None:
        """Add one batch of `n` clips with its mean loss and accuracies."""
        self.loss += loss * n
        self.top1 += top1 * n
        self.top5 += top5 * n
        self.n += n

    def _rates(self) -> tuple[float, float]:
        """(clips per second, fraction of the time spent waiting for data)."""
        total = max(self.wait + self.busy, 1e-9)
        return self.n / total, self.wait / total

    def step_stats(self, epoch: int, step: int, steps: int, lr: float) -> StepStats:
        """What the progress display shows after batch `step` (1-based) of `steps`."""
        n = self.n
        return StepStats(epoch, step, steps, self.loss / n, self.top1 / n, self.top5 / n, lr, *self._rates())

    def as_row(self, epoch: int, lr: float, bad_samples: int) -> dict:
        """The metrics.jsonl row of a finished epoch (`epoch` 1-based)."""
        n = max(self.n, 1)
        clips_per_s, data_wait = self._rates()
        return {
            "epoch": epoch,
            "loss": self.loss / n,
            "top1": self.top1 / n,
            "top5": self.top5 / n,
            "lr": lr,
            "clips": int(self.n),
            "clips_per_s": clips_per_s,
            "data_wait": data_wait,
            "bad_samples": bad_samples,
            "time_s": self.wait + self.busy,
        }

    def all_reduce(self, all_sum: Callable[[list[float]], list[float]], world: int) -> "EpochMeter":
        """The meter of all ranks: sums added up by `all_sum`, times averaged over the `world` ranks."""
        loss, top1, top5, n, wait, busy = all_sum([self.loss, self.top1, self.top5, self.n, self.wait, self.busy])
        return EpochMeter(loss, top1, top5, n, wait / world, busy / world)

    def to_state(self) -> dict:
        """The sums as a mid-epoch checkpoint's ``partial`` (the names of the epoch row)."""
        return asdict(self)

    @classmethod
    def from_state(cls, partial: Optional[dict]) -> "EpochMeter":
        """The meter a checkpoint's ``partial`` recorded; also reads sets written before the names were the
        epoch row's (``c1``/``c5`` for top1/top5)."""
        p = partial or {}
        return cls(
            float(p.get("loss", 0.0)),
            float(p.get("top1", p.get("c1", 0.0))),
            float(p.get("top5", p.get("c5", 0.0))),
            float(p.get("n", 0.0)),
            float(p.get("wait", 0.0)),
            float(p.get("busy", 0.0)),
        )

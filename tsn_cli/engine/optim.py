"""The optimisation recipe of a training run (PaddleVideo's TSN settings by default): the base LR, the epochs the
LR drops after, the per-step schedule, the Momentum optimizer, and the schedule record a checkpoint keeps so that
a resume can say when it would not end like the run it continues.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from tsn_cli.config import RunConfig
from tsn_cli.errors import TsnError


def base_lr(cfg: RunConfig, world_size: int = 1) -> float:
    """The configured LR, linearly scaled by global batch / base_batch_size with `auto_scale_lr`."""
    t = cfg.train
    if not t.auto_scale_lr:
        return t.lr
    return t.lr * (t.batch_size * world_size * t.accum_steps) / t.base_batch_size


def boundary_epoch(fraction: float, epochs: int) -> int:
    """The epoch a fraction of the run lands on: the nearest one inside the run (1 .. epochs-1), so it scales."""
    return min(max(1, math.floor(fraction * epochs + 0.5)), max(1, epochs - 1))


def lr_boundaries(cfg: RunConfig) -> list[int]:
    """Epochs after which the LR drops: `train.lr_boundaries` (whole epochs as given, fractions < 1 of
    `train.epochs`), else 1/3 and 2/3 of the epochs (PaddleVideo: 40, 80 of 120)."""
    t = cfg.train
    given = t.lr_boundaries or [1 / 3, 2 / 3]
    return sorted({b if isinstance(b, int) else boundary_epoch(b, t.epochs) for b in given})


def late_boundaries_warning(cfg: RunConfig) -> Optional[str]:
    """One line when explicit boundaries fall at or after the last epoch (the LR never drops there), else None."""
    t = cfg.train
    bounds = lr_boundaries(cfg)
    late = [b for b in bounds if b >= t.epochs]
    if not t.lr_boundaries or not late:
        return None
    given = "[" + ", ".join(f"{b:g}" for b in t.lr_boundaries) + "]"
    early = [b for b in bounds if b < t.epochs]
    if early:
        which = f"{given}: {', '.join(map(str, late))} {'is' if len(late) == 1 else 'are'}"
        what = f"the LR drops after epoch {', '.join(map(str, early))} only"
    else:
        which, what = f"{given} {'is' if len(t.lr_boundaries) == 1 else 'are'}", "the LR never drops"
    hint = "; set -o train.lr_boundaries=[0.333,0.667] for fractions of the epochs" if t.epochs > 1 else ""
    return f"train.lr_boundaries {which} at or past the last epoch ({t.epochs}): {what}{hint}"


def optimizer_steps_per_epoch(batches: int, accum_steps: int) -> int:
    """Optimizer steps in an epoch of ``batches`` batches: a trailing partial accumulation group also steps."""
    return max(1, math.ceil(batches / max(1, accum_steps)))


def build_schedule(cfg: RunConfig, steps_per_epoch: int, world_size: int = 1):
    """Piecewise decay stepped per optimizer step, optionally behind a linear warmup from 0.

    The LR of optimizer step ``i`` (0-based) is ``lr0 * decay**k`` with ``k`` = number of boundaries ``b`` with
    ``i >= b * steps_per_epoch`` -- boundaries are absolute epochs, also with warmup (Paddle's LinearWarmup
    restarts the inner schedule's counter after the warmup, so the inner boundaries are shifted back by it).
    During warmup (``warmup_epochs * steps_per_epoch`` steps) the LR rises linearly ``lr0 * i / warm``.
    """
    from tsn_cli.runtime import import_paddle

    paddle = import_paddle()
    lr0 = base_lr(cfg, world_size)
    warm = int(round(cfg.train.warmup_epochs * steps_per_epoch))
    bounds = [max(1, b * steps_per_epoch - warm) for b in lr_boundaries(cfg)]
    values = [lr0 * cfg.train.lr_decay**i for i in range(len(bounds) + 1)]
    sched = paddle.optimizer.lr.PiecewiseDecay(boundaries=bounds, values=values)
    if warm > 0:
        sched = paddle.optimizer.lr.LinearWarmup(learning_rate=sched, warmup_steps=warm, start_lr=0.0, end_lr=lr0)
    return sched


def build_optimizer(cfg: RunConfig, model, sched):
    """Momentum + L2 decay on every parameter + global-norm clipping (PaddleVideo's TSN settings).

    Parameters with ``stop_gradient`` (BN statistics; the layers `engine.finetune` freezes) get no gradient, so the
    optimizer never updates them -- neither the step nor the L2 decay touches a parameter without a gradient."""
    from tsn_cli.runtime import import_paddle

    paddle = import_paddle()
    t = cfg.train
    clip = paddle.nn.ClipGradByGlobalNorm(t.grad_clip) if t.grad_clip else None
    return paddle.optimizer.Momentum(
        learning_rate=sched,
        momentum=t.momentum,
        parameters=model.parameters(),
        weight_decay=paddle.regularizer.L2Decay(t.weight_decay) if t.weight_decay else None,
        grad_clip=clip,
        multi_precision=cfg.runtime.amp is not None and cfg.runtime.amp_level == "O2",
    )


def schedule_of(cfg: RunConfig, world_size: int = 1) -> dict:
    """What decides the LR of every step (stored in each checkpoint's .state.json; a resume compares it)."""
    t = cfg.train
    return {
        "epochs": t.epochs,
        "lr": base_lr(cfg, world_size),
        "lr_boundaries": lr_boundaries(cfg),
        "lr_decay": t.lr_decay,
        "warmup_epochs": t.warmup_epochs,
    }


def schedule_beside(checkpoint: Path, world_size: int) -> dict:
    """The schedule of the run that wrote `checkpoint`, from the config.yaml beside it (checkpoints written
    before .state.json recorded it); {} when there is none."""
    from tsn_cli.config import config_beside, load_config

    saved = config_beside(checkpoint)
    if saved is None:
        return {}
    try:
        return schedule_of(load_config(saved), world_size)
    except TsnError:
        return {}


def schedule_change(was: dict, now: dict, start_epoch: int) -> Optional[str]:
    """One line saying how a resumed run's schedule differs from its checkpoint's run, or None when it does not."""
    names = {
        "epochs": "epochs",
        "lr": "LR",
        "lr_boundaries": "LR drops after epochs",
        "lr_decay": "lr_decay",
        "warmup_epochs": "warmup_epochs",
    }
    diffs = [f"{names[k]} {was[k]} -> {now[k]}" for k in names if k in was and was[k] != now[k]]
    if not diffs:
        return None
    if start_epoch >= now["epochs"]:
        what = "there is nothing left to train"
    else:
        end = now["epochs"]
        rest = f"epoch {end} follows" if start_epoch + 1 == end else f"epochs {start_epoch + 1}-{end} follow"
        what = f"{rest} the new schedule, so the result will not match an uninterrupted run of either schedule"
    return f"the schedule differs from the one it was written with ({'; '.join(diffs)}): {what}"

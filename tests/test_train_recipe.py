"""The training recipe without data: LR schedule at its boundaries (warmup, accumulation, auto-scale), clipping,
L2 decay, per-step seeds. (Checkpoint sets: tests/test_checkpoint_set.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from tsn_cli.config import load_config, with_values
from tsn_cli.engine import optim as O
from tsn_cli.engine import train as T


def _cfg(**train):
    cfg = load_config(None)
    return with_values(cfg, {f"train.{k}": v for k, v in train.items()})


def _lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched())
        sched.step()
    return out


def test_default_boundaries_are_thirds_of_the_epochs():
    assert O.lr_boundaries(_cfg(epochs=120)) == [40, 80]  # PaddleVideo's TSN
    assert O.lr_boundaries(_cfg(epochs=9, lr_boundaries=[7, 3])) == [3, 7]


def test_lr_at_the_boundaries_per_optimizer_step():
    cfg = _cfg(epochs=6, lr=0.1, lr_boundaries=[2, 4])
    lrs = _lrs(O.build_schedule(cfg, steps_per_epoch=5), 30)
    assert lrs[9] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.01)  # last step of epoch 2 / first of 3
    assert lrs[19] == pytest.approx(0.01) and lrs[20] == pytest.approx(0.001)
    assert lrs[29] == pytest.approx(0.001)


def test_warmup_is_linear_and_keeps_the_boundaries_absolute():
    cfg = _cfg(epochs=6, lr=0.1, lr_boundaries=[2, 4], warmup_epochs=1)
    lrs = _lrs(O.build_schedule(cfg, steps_per_epoch=5), 30)
    assert lrs[:5] == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08])
    assert lrs[5] == pytest.approx(0.1) and lrs[9] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(0.01)  # still epoch 3's first step, not shifted by the warmup
    assert lrs[19] == pytest.approx(0.01) and lrs[20] == pytest.approx(0.001)


def test_accumulation_counts_optimizer_steps_and_auto_scale_uses_the_global_batch():
    assert O.optimizer_steps_per_epoch(5, 2) == 3  # the trailing partial group also steps
    assert O.optimizer_steps_per_epoch(6, 3) == 2
    assert O.optimizer_steps_per_epoch(1, 4) == 1
    cfg = _cfg(lr=0.01, batch_size=8, accum_steps=2, auto_scale_lr=True, base_batch_size=256)
    assert O.base_lr(cfg, world_size=4) == pytest.approx(0.01 * 8 * 4 * 2 / 256)
    assert O.base_lr(_cfg(lr=0.01, batch_size=8), world_size=4) == pytest.approx(0.01)  # off by default


def test_global_norm_clipping_and_l2_decay():
    from tsn_cli.runtime import import_paddle

    paddle = import_paddle()
    paddle.seed(0)
    lin = paddle.nn.Linear(10, 4)
    cfg = _cfg(lr=1.0, momentum=0.0, weight_decay=1e-4, grad_clip=40.0)
    opt = O.build_optimizer(cfg, lin, 1.0)
    assert isinstance(opt._grad_clip, paddle.nn.ClipGradByGlobalNorm) and opt._grad_clip.clip_norm == 40.0
    # Momentum folds L2Decay into its fused update (regularization -> method/coeff)
    assert (opt._regularization_method, opt._regularization_coeff) == ("l2_decay", pytest.approx(1e-4))
    before = [p.numpy().copy() for p in lin.parameters()]
    (lin(paddle.ones([2, 10])).sum() * 1e6).backward()  # a huge gradient
    opt.step()
    delta = np.sqrt(sum(((p.numpy() - b) ** 2).sum() for p, b in zip(lin.parameters(), before, strict=True)))
    assert delta == pytest.approx(40.0, rel=1e-3)  # lr 1 x clipped global norm 40 (+ tiny decay)


def test_step_seed_is_a_pure_function():
    assert T.step_seed(7, 1, 2) == T.step_seed(7, 1, 2)
    assert len({T.step_seed(7, e, s) for e in range(3) for s in range(50)}) == 150


def test_gpus_option_relaunches_through_paddle_distributed_launch():
    import sys

    from tsn_cli.cli.train import relaunch_argv

    argv = relaunch_argv(["train", "--config", "c.yaml", "--gpus", "0,1", "--epochs", "3"], "0,1", "out/log")
    assert argv == [sys.executable, "-m", "paddle.distributed.launch", "--gpus", "0,1", "--log_dir", "out/log",
                    "-m", "tsn_cli", "train", "--config", "c.yaml", "--epochs", "3"]
    assert "--gpus=0,1" not in relaunch_argv(["train", "--gpus=0,1"], "0,1", "log")[7:]

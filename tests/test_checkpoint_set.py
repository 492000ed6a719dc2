"""Checkpoint sets without a Trainer: save -> latest -> load continues bit for bit, the `.state.json` commit
marker, which set `--resume auto` picks, optimizer state under structured names, and the epoch's running sums
(also as written before they were named like the epoch row)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tsn_cli.config import load_config
from tsn_cli.engine import checkpoints as C
from tsn_cli.engine.checkpoints import CheckpointSet, RunState
from tsn_cli.engine.meter import EpochMeter
from tsn_cli.engine.optim import build_optimizer, build_schedule
from tsn_cli.errors import CheckpointError, TsnError

CFG = load_config(None)


def _tiny(paddle, classes: int = 3):
    """A small model with BatchNorm statistics, its Momentum optimizer and LR schedule (2 steps per epoch)."""
    model = paddle.nn.Sequential(paddle.nn.Linear(4, 8), paddle.nn.BatchNorm1D(8), paddle.nn.Linear(8, classes))
    sched = build_schedule(CFG, steps_per_epoch=2)
    return model, build_optimizer(CFG, model, sched), sched


def _step(paddle, model, opt, sched, seed: int) -> None:
    x = paddle.to_tensor(np.random.default_rng(seed).normal(size=(5, 4)).astype("float32"))
    (model(x) ** 2).mean().backward()
    opt.step()
    opt.clear_grad()
    sched.step()


def _weights(model) -> dict:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _trained(paddle, steps: int = 2):
    paddle.seed(0)
    model, opt, sched = _tiny(paddle)
    for i in range(steps):
        _step(paddle, model, opt, sched, i)
    return model, opt, sched


def test_save_latest_load_round_trip_continues_bit_for_bit(paddle, tmp_path):
    a, opt_a, sched_a = _trained(paddle)
    ckpts = CheckpointSet(tmp_path)
    assert ckpts.latest() is None
    state = RunState(epoch=1, step=0, best_top1=0.5, best_epoch=1, steps_per_epoch=2, schedule={"epochs": 3}, seed=7)
    path = ckpts.save(C.epoch_stem(1), a, opt_a, state)
    assert path == tmp_path / "TSN_epoch_00001.pdparams" == ckpts.latest() == ckpts.resolve("auto")
    assert ckpts.resolve(tmp_path / "TSN_epoch_00001.pdopt") == path
    meta = json.loads((tmp_path / "TSN_epoch_00001.state.json").read_text())
    assert meta["optimizer_keys"] == "structured" and meta["seed"] == 7

    b, opt_b, sched_b = _tiny(paddle)  # built later: other per-process parameter names
    assert b[0].weight.name != a[0].weight.name
    assert ckpts.load(path, b, opt_b, fix="fix it") == state
    assert all(np.array_equal(v, _weights(b)[k]) for k, v in _weights(a).items())  # BN statistics included
    assert sched_b.last_epoch == sched_a.last_epoch == 2
    _step(paddle, a, opt_a, sched_a, 9)  # the momentum was restored too: the next step is the same
    _step(paddle, b, opt_b, sched_b, 9)
    assert all(np.array_equal(v, _weights(b)[k]) for k, v in _weights(a).items())


def test_a_set_without_its_state_json_is_never_resumed_from(paddle, tmp_path):
    model, opt, _ = _trained(paddle, steps=1)
    ckpts = CheckpointSet(tmp_path)
    ckpts.save(C.epoch_stem(1), model, opt, RunState(epoch=1))
    ckpts.save(C.epoch_stem(2), model, opt, RunState(epoch=2))
    (tmp_path / "TSN_epoch_00002.state.json").unlink()  # a kill between the .pdopt and the marker
    assert ckpts.latest() == tmp_path / "TSN_epoch_00001.pdparams"
    (tmp_path / "TSN_epoch_00001.pdopt").unlink()  # a set is complete only with all three files
    assert ckpts.latest() is None
    ckpts.remove(C.epoch_stem(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["TSN_epoch_00002.pdopt", "TSN_epoch_00002.pdparams"]


def test_latest_is_the_set_furthest_along_interrupted_or_epoch(paddle, tmp_path):
    model, opt, _ = _trained(paddle, steps=1)
    ckpts = CheckpointSet(tmp_path)
    ckpts.save(C.epoch_stem(1), model, opt, RunState(epoch=1))
    ckpts.save(C.BEST, model, opt, RunState(epoch=1))  # never resumed from
    partial = EpochMeter(loss=2.0, top1=1.0, top5=2.0, n=2).to_state()
    ckpts.save(C.INTERRUPTED, model, opt, RunState(epoch=1, step=1, partial=partial))
    assert ckpts.latest().name == "TSN_interrupted.pdparams"  # (1, 1) > (1, 0)
    assert ckpts.load(ckpts.latest(), model, opt, fix="").partial == partial
    ckpts.save(C.epoch_stem(2), model, opt, RunState(epoch=2))
    assert ckpts.latest().name == "TSN_epoch_00002.pdparams"
    ckpts.remove(C.INTERRUPTED)
    assert not list(tmp_path.glob("TSN_interrupted*"))

    from tsn_cli.engine.rundir import run_results  # the used-folder check knows every file a set has

    assert {p.name for p in run_results(tmp_path)} == {p.name for p in tmp_path.iterdir()}


def test_resume_auto_picks_the_complete_checkpoint_furthest_along(tmp_path):
    def stub(stem, epoch, step=0, marker=True):
        for suffix in (".pdparams", ".pdopt"):
            (tmp_path / f"{stem}{suffix}").write_bytes(b"x")
        if marker:
            (tmp_path / f"{stem}.state.json").write_text(json.dumps({"epoch": epoch, "step": step}))

    stub("TSN_epoch_00001", 1)
    stub("TSN_epoch_00002", 2)
    stub("TSN_epoch_00003", 3, marker=False)  # a write that never finished
    assert C.find_latest_checkpoint(tmp_path).name == "TSN_epoch_00002.pdparams"
    stub("TSN_interrupted", 2, step=5)
    assert C.find_latest_checkpoint(tmp_path).name == "TSN_interrupted.pdparams"
    stub("TSN_epoch_00003", 3)
    assert C.find_latest_checkpoint(tmp_path).name == "TSN_epoch_00003.pdparams"


def test_non_finite_weights_are_never_written(paddle, tmp_path):
    model, opt, _ = _trained(paddle, steps=1)
    model[2].bias.set_value(np.full(3, np.nan, dtype="float32"))
    with pytest.raises(TsnError, match=r"checkpoint TSN_epoch_00001: weights are not finite \(2\.bias\)"):
        CheckpointSet(tmp_path).save(C.epoch_stem(1), model, opt, RunState(epoch=1))
    assert not list(tmp_path.iterdir())


def test_load_refuses_a_set_of_another_model(paddle, tmp_path):
    model, opt, _ = _trained(paddle, steps=1)
    ckpts = CheckpointSet(tmp_path)
    path = ckpts.save(C.epoch_stem(1), model, opt, RunState(epoch=1))
    other, other_opt, _ = _tiny(paddle, classes=4)
    with pytest.raises(CheckpointError, match=r"^--resume: .*TSN_epoch_00001\.pdparams: 2\.weight is \[8, 3\] in the "
                                              r"checkpoint, \[8, 4\] in the model.*; use the first run's settings$"):
        ckpts.load(path, other, other_opt, fix="use the first run's settings")
    with pytest.raises(TsnError, match=r"--resume: .*TSN_epoch_00009\.pdparams \(and its \.pdopt\) not found"):
        ckpts.load(tmp_path / "TSN_epoch_00009.pdparams", model, opt, fix="")


def test_accumulator_keys_are_renamed_longest_parameter_name_first():
    mapping = {"conv2d_1.w_0": "a.weight", "conv2d_12.w_0": "b.weight"}
    state = {"conv2d_12.w_0_velocity_0": 1, "conv2d_1.w_0_velocity_0": 2, "master_weights": {"conv2d_12.w_0": 3},
             "LR_Scheduler": {"last_epoch": 4}, "unrelated": 5}
    out = C._rename_accumulators(state, mapping)
    assert out == {"b.weight_velocity_0": 1, "a.weight_velocity_0": 2, "master_weights": {"b.weight": 3},
                   "LR_Scheduler": {"last_epoch": 4}, "unrelated": 5}
    assert C._rename_accumulators(out, {v: k for k, v in mapping.items()}) == state


def test_optimizer_state_is_saved_under_structured_names_and_loads_in_any_process(paddle, tmp_path):
    from tsn_cli.model.checkpoint import load_object, save_object
    from tsn_cli.model.tsn import TSN

    a = TSN(depth=18, num_classes=3)
    opt_a = build_optimizer(CFG, a, 0.1)
    a(paddle.randn([2, 2, 3, 32, 32])).mean().backward()
    opt_a.step()
    path = save_object(C.optimizer_state_for_file(opt_a, a), tmp_path / "x.pdopt")
    state = load_object(path)
    assert "head.fc.weight_velocity_0" in state and "backbone.conv._conv.weight_velocity_0" in state
    assert not any(k.startswith(("conv2d_", "linear_")) for k in state)
    assert set(paddle.load(str(path))) == set(state)  # still a paddle.load-able .pdopt
    b = TSN(depth=18, num_classes=3)  # built second: other per-process names
    assert b.head.fc.weight.name != a.head.fc.weight.name
    opt_b = build_optimizer(CFG, b, 0.1)
    opt_b.set_state_dict(C.optimizer_state_from_file(state, b))

    def arr(x):  # restored accumulators stay numpy until the first step creates the tensors
        return np.asarray(x.numpy() if hasattr(x, "numpy") else x)

    va = arr(opt_a.state_dict()[f"{a.head.fc.weight.name}_velocity_0"])
    vb = arr(opt_b.state_dict()[f"{b.head.fc.weight.name}_velocity_0"])
    assert np.abs(va).sum() > 0 and np.array_equal(va, vb)
    # a PaddleVideo .pdopt (per-process names of this process) passes through unchanged
    raw = {f"{b.head.fc.weight.name}_velocity_0": np.ones(2)}
    assert C.optimizer_state_from_file(raw, b) == raw


def test_epoch_meter_state_uses_the_row_names_and_reads_the_old_ones():
    m = EpochMeter()
    m.update(loss=1.5, top1=0.5, top5=1.0, n=4)
    m.update(loss=0.5, top1=1.0, top5=1.0, n=2)
    m.wait, m.busy = 1.0, 3.0
    assert m.to_state() == {"loss": 7.0, "top1": 4.0, "top5": 6.0, "n": 6.0, "wait": 1.0, "busy": 3.0}
    assert EpochMeter.from_state(m.to_state()) == m
    old = {"loss": 7.0, "c1": 4.0, "c5": 6.0, "n": 6.0, "wait": 1.0, "busy": 3.0}  # written before the rename
    assert EpochMeter.from_state(old) == m and EpochMeter.from_state(None) == EpochMeter()
    row = m.as_row(epoch=3, lr=0.01, bad_samples=1)
    assert row == {"epoch": 3, "loss": pytest.approx(7 / 6), "top1": pytest.approx(4 / 6), "top5": 1.0, "lr": 0.01,
                   "clips": 6, "clips_per_s": 1.5, "data_wait": 0.25, "bad_samples": 1, "time_s": 4.0}
    doubled = m.all_reduce(lambda values: [2 * v for v in values], world=2)  # two ranks with the same sums
    assert (doubled.n, doubled.top1, doubled.wait, doubled.busy) == (12.0, 8.0, 1.0, 3.0)


def test_prune_keeps_the_latest_epoch_sets_and_nothing_else_is_touched(paddle, tmp_path):
    model, opt, _ = _trained(paddle, steps=1)
    ckpts = CheckpointSet(tmp_path)
    for stem, epoch in (("TSN_epoch_00001", 1), ("TSN_epoch_00002", 2), (C.BEST, 1), ("TSN_epoch_00005", 5)):
        ckpts.save(stem, model, opt, RunState(epoch=epoch))
    (tmp_path / "TSN_epoch_00003.pdparams").write_bytes(b"x")  # an incomplete set (a kill mid-save) goes too
    ckpts.save("TSN_epoch_00004", model, opt, RunState(epoch=4))  # just written, after a resume from epoch 2
    assert ckpts.prune(2, newest=4) == ["TSN_epoch_00001", "TSN_epoch_00002"]
    # 3 is older than the 2 latest (3, 4); 5 lies after the epoch just written: this run writes it again
    assert ckpts.prune(1, newest=4) == ["TSN_epoch_00003"]
    stems = sorted({p.name.split(".")[0] for p in tmp_path.iterdir()})
    assert stems == ["TSN_best", "TSN_epoch_00004", "TSN_epoch_00005"]
    assert ckpts.prune(1, newest=5) == ["TSN_epoch_00004"] and ckpts.latest().name == "TSN_epoch_00005.pdparams"

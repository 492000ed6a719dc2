"""Fine-tuning controls (issue 14 item 5): frozen stages and partial BN leave their tensors untouched (checked in
the checkpoints `tsn train` writes), label smoothing and class weights in the loss, class-balanced sampling
frequencies, and --patience's stop epoch and summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers_train import make_tiny_data, run_train, weights, write_tiny_config
from tsn_cli.data.dataset import EpochBatchSampler
from tsn_cli.engine.finetune import frozen_layer_names, loss_weights, sample_weights
from tsn_cli.engine.stopping import patience_reason


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("ft_data"))


@pytest.fixture(scope="module")
def start(data, tmp_path_factory):
    """A 1-epoch run whose checkpoint is the starting point the fine-tuning runs load with --weights."""
    root = tmp_path_factory.mktemp("ft_start")
    cfg = write_tiny_config(root / "c.yaml", data, root / "out", epochs=1)
    proc = run_train("--config", cfg)
    assert proc.returncode == 0, proc.stderr
    return root / "out" / "TSN_epoch_00001.pdparams"


def _finetune(tmp_path, data, start, *flags) -> tuple[dict, dict, str]:
    """One epoch from `start` with `flags`: (weights before, weights after, stderr)."""
    cfg = write_tiny_config(tmp_path / "c.yaml", data, tmp_path / "out", epochs=1, lr=0.05)
    proc = run_train("--config", cfg, "--weights", start, *flags)
    assert proc.returncode == 0, proc.stderr
    return weights(start), weights(tmp_path / "out" / "TSN_epoch_00001.pdparams"), proc.stderr


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not np.array_equal(before[k], after[k])}


def _bn_keys(keys, part: str) -> set[str]:
    return {k for k in keys if "_batch_norm." in k and k.endswith(part)}


def test_freeze_stages_keeps_conv1_and_res2_parameters_and_statistics(data, start, tmp_path):
    before, after, err = _finetune(tmp_path, data, start, "--freeze-stages", "1")
    frozen = {k for k in before if k.startswith(("backbone.conv.", "backbone.res2"))}
    assert any(k.endswith("_mean") for k in frozen) and any(k.endswith("_conv.weight") for k in frozen)
    changed = _changed(before, after)
    assert not frozen & changed  # weights, BN affine and BN running statistics all identical
    res3 = {k for k in before if k.startswith("backbone.res3")}
    assert {k for k in res3 if k.endswith(("_conv.weight", "_mean"))} <= changed
    assert "head.fc.weight" in changed
    assert "fine-tuning: frozen: conv1, res2 (" in err
    assert "freeze_stages: 1" in (tmp_path / "out" / "config.yaml").read_text()


def test_partial_bn_updates_only_the_first_batchnorm(data, start, tmp_path):
    before, after, err = _finetune(tmp_path, data, start, "--partial-bn", "-o", "train.class_balance=loss",
                                   "-o", "train.label_smoothing=0.1")
    changed = _changed(before, after)
    first = {f"backbone.conv._batch_norm.{p}" for p in ("_mean", "_variance", "weight", "bias")}
    assert first <= changed  # the first BN trains fully: statistics and affine
    others = (_bn_keys(before, "_mean") | _bn_keys(before, "_variance") | _bn_keys(before, "weight")
              | _bn_keys(before, "bias")) - first
    n_bn = len(_bn_keys(before, "_mean"))
    assert n_bn > 15 and len(others) == 4 * (n_bn - 1) and not others & changed
    convs = {k for k in before if k.endswith("_conv.weight")}
    assert convs <= changed  # convolutions still train
    assert f"partial BN: {n_bn - 1} of {n_bn} BatchNorm layers frozen" in err


def test_freeze_stages_out_of_range_is_a_usage_error(data, tmp_path):
    cfg = write_tiny_config(tmp_path / "c.yaml", data, tmp_path / "out")
    proc = run_train("--config", cfg, "--freeze-stages", "5")
    assert proc.returncode == 2 and "--freeze-stages" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_patience_stops_after_n_plus_one_validations_and_says_why(data, start, tmp_path):
    # the whole backbone frozen (its BN statistics too) and a negligible LR: val top-1 cannot change
    cfg = write_tiny_config(tmp_path / "c.yaml", data, tmp_path / "out", epochs=8, val=True, lr=1e-12)
    proc = run_train("--config", cfg, "--weights", start, "--freeze-stages", "4", "--patience", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["epochs_done"] == 3 and summary["stopped_early"] is True and summary["best_epoch"] == 1
    assert summary["stop_reason"].startswith("early stop (--patience 2): val top-1 has not improved for 2 valid")
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all("val_top1" in r for r in rows)
    assert (tmp_path / "out" / "TSN_epoch_00003.pdparams").is_file()  # the stop epoch is saved as the last one
    assert "stopped after epoch 3" in " ".join(proc.stderr.split())  # said on screen too (wrapped)


def test_patience_table_title_and_reason(data, start, tmp_path):
    cfg = write_tiny_config(tmp_path / "c.yaml", data, tmp_path / "out", epochs=4, val=True, lr=1e-12)
    proc = run_train("--config", cfg, "--weights", start, "--freeze-stages", "4", "--patience", "1",
                     env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "Training stopped early" in proc.stdout and "stop_reason" in proc.stdout
    assert "not improved for 1 validations" in proc.stdout


def test_patience_reason_counts_validations_not_epochs():
    assert patience_reason(2, 1, 2, 1) is None
    assert "for 2 validations" in patience_reason(2, 1, 3, 1)
    assert patience_reason(2, 2, 4, 2) is None  # validations every 2 epochs: 1 since the best (epoch 2) ...
    assert patience_reason(2, 2, 5, 2) is None  # ... none at an odd epoch ...
    assert "for 2 validations (best at epoch 2)" in patience_reason(2, 2, 6, 2)  # ... 2 at epoch 6
    assert patience_reason(None, 1, 50, 1) is None and patience_reason(3, None, 50, 1) is None


def test_frozen_layer_names():
    assert frozen_layer_names(0) == []
    assert frozen_layer_names(1) == ["conv", "res2"]
    assert frozen_layer_names(4) == ["conv", "res2", "res3", "res4", "res5"]


# ---------------------------------------------------------------------------------------------- the loss
def _loss(logits, labels, eps=0.0, weight=None):
    import paddle

    from tsn_cli.engine.finetune import smoothed_cross_entropy

    w = None if weight is None else paddle.to_tensor(np.asarray(weight, dtype="float32"))
    return float(smoothed_cross_entropy(paddle.to_tensor(logits), paddle.to_tensor(labels.reshape(-1, 1)),
                                        eps, w).item())


def test_label_smoothing_loss_matches_the_soft_target_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype("float32") * 3
    labels = np.array([0, 1, 2, 3, 4, 0], dtype="int64")
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    nll = -logp[np.arange(6), labels].mean()
    eps = 0.2
    expected = (1 - eps) * nll + eps * (-logp.mean(1)).mean()
    assert _loss(logits, labels) == pytest.approx(nll, rel=1e-5)
    assert _loss(logits, labels, eps) == pytest.approx(expected, rel=1e-5)
    assert _loss(logits, labels, eps) != pytest.approx(nll, rel=1e-3)
    # a confident correct prediction is penalised by smoothing: the loss does not go to 0
    sure = np.full((1, 5), -20.0, dtype="float32")
    sure[0, 2] = 20.0
    assert _loss(sure, np.array([2])) < 1e-6 and _loss(sure, np.array([2]), 0.1) > 1.0


def test_class_weights_are_inverse_frequency_with_mean_one():
    w = loss_weights([0, 0, 0, 0, 1, 1, 2], 4)  # class 3 absent
    assert w[:3] == pytest.approx(np.array([0.25, 0.5, 1.0]) / np.mean([0.25, 0.5, 1.0]))
    assert w[:3].mean() == pytest.approx(1.0) and w[3] == 1.0
    logits = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    labels = np.array([0, 1, 2], dtype="int64")
    per = -(logits - np.log(np.exp(logits).sum(1, keepdims=True)))[np.arange(3), labels]
    assert _loss(logits, labels, 0.0, w) == pytest.approx((per * w[labels]).sum() / w[labels].sum(), rel=1e-5)


# ---------------------------------------------------------------------------------------------- the sampler
def _draws(sampler, epoch):
    sampler.set_epoch(epoch)
    return [k - (epoch + 1) * sampler.n for batch in sampler for k in batch]


def test_class_balanced_sampler_draws_classes_equally_often():
    labels = np.array([0] * 40 + [1] * 8 + [2] * 2)
    sampler = EpochBatchSampler(len(labels), 5, True, False, seed=3, weights=sample_weights(labels, 3))
    counts = np.zeros(3)
    for epoch in range(10):
        idx = _draws(sampler, epoch)
        assert len(idx) == len(labels)
        counts += np.bincount(labels[idx], minlength=3)
    assert counts.sum() == 500 and all(130 < c < 205 for c in counts), counts  # 1/3 each; unweighted: 400/80/20
    plain = EpochBatchSampler(len(labels), 5, True, False, seed=3)
    assert np.bincount(labels[_draws(plain, 0)]).tolist() == [40, 8, 2]


def test_class_balanced_sampler_is_deterministic_resumable_and_sharded():
    labels = np.array([0] * 30 + [1] * 6)
    w = sample_weights(labels, 2)

    def make(**kw):
        return EpochBatchSampler(len(labels), 4, True, False, seed=11, weights=w, **kw)

    full = _draws(make(), 2)
    assert full == _draws(make(), 2) and full != _draws(make(), 3)
    resumed = make()
    resumed.set_epoch(2, skip=3)
    assert [k - 3 * 36 for b in resumed for k in b] == full[12:]  # the skip leaves out the first 3 batches
    shards = [_draws(make(rank=r, world=2), 2) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(full) and len(shards[0]) == len(shards[1]) == 18


def test_sampler_end_to_end_and_patience_without_validation(data, tmp_path):
    cfg = write_tiny_config(tmp_path / "c.yaml", data, tmp_path / "out", epochs=1)
    proc = run_train("--config", cfg, "-o", "train.class_balance=sampler", "--patience", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert np.isfinite(json.loads(proc.stdout)["history"][0]["loss"])
    assert "--patience 2 has no effect without validation" in " ".join(proc.stderr.split())
    assert "class_balance: sampler" in (tmp_path / "out" / "config.yaml").read_text()

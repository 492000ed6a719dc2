"""Parity with PaddleVideo: same state-dict layout and the same logits for the same weights and input.

The goldens in tests/golden/ come from PaddleVideo's own code (see tests/golden/README.md); the weights and inputs
are rebuilt here by the deterministic generators in tests/helpers_model.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers_model import GOLDEN_CASES, golden_input, golden_weights

GOLDEN = Path(__file__).parent / "golden"
TOL = 1e-4


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_logits_match_paddlevideo(paddle, case):
    from tsn_cli.model.tsn import TSN

    spec = GOLDEN_CASES[case]
    golden = json.loads((GOLDEN / f"pv_logits_{case}.json").read_text())
    train = spec["mode"] == "train"
    model = TSN(depth=spec["depth"], num_classes=spec["num_classes"], dropout=0.0 if train else 0.4)
    weights = golden_weights({k: tuple(v.shape) for k, v in model.state_dict().items()}, spec["seed"])
    missing, unexpected = model.set_state_dict(weights)
    assert not missing and not unexpected
    model.train() if train else model.eval()
    x = paddle.to_tensor(golden_input(spec["shape"], spec["seed"] + 1))
    with paddle.no_grad():
        logits = model(x).numpy()
    expected = np.asarray(golden["logits"], dtype=np.float64)
    assert logits.shape == expected.shape
    assert np.abs(logits - expected).max() <= TOL, np.abs(logits - expected).max()
    if train:
        sd = model.state_dict()
        np.testing.assert_allclose(sd["backbone.conv._batch_norm._mean"].numpy(), golden["stem_bn_mean_after"],
                                   rtol=0, atol=1e-5)
        var = sd["backbone.res5c.conv2._batch_norm._variance"].numpy()[:16]
        np.testing.assert_allclose(var, golden["res5c_bn_var_after"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_state_dict_layout_equals_paddlevideo(paddle, depth):
    from tsn_cli.model.tsn import TSN

    golden = json.loads((GOLDEN / f"pv_keys_r{depth}.json").read_text())
    ours = [[k, list(v.shape)] for k, v in TSN(depth=depth, num_classes=golden["num_classes"]).state_dict().items()]
    assert ours == golden["keys"]  # same keys, same shapes, same order


def test_eval_is_deterministic_and_view_count_free(paddle):
    """25 segments x 10 crops style input: the same weights give the mean over all views, in any grouping."""
    from tsn_cli.model.tsn import TSN

    spec = GOLDEN_CASES["r50_eval"]
    model = TSN(depth=50, num_classes=spec["num_classes"])
    model.set_state_dict(golden_weights({k: tuple(v.shape) for k, v in model.state_dict().items()}, spec["seed"]))
    model.eval()
    x = golden_input((1, 6, 3, 32, 32), 11)
    with paddle.no_grad():
        whole = model(paddle.to_tensor(x)).numpy()
        feats = model.frame_features(paddle.to_tensor(x)).numpy()
        halves = [model.frame_features(paddle.to_tensor(x[:, i:i + 3])).numpy() for i in (0, 3)]
        mixed = model.classify(paddle.to_tensor(np.concatenate(halves, axis=1).mean(axis=1))).numpy()
    np.testing.assert_allclose(feats, np.concatenate(halves, axis=1), rtol=0, atol=1e-5)
    np.testing.assert_allclose(whole, mixed, rtol=0, atol=1e-5)

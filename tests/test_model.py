"""TSN model tests: every depth builds and runs, PaddleVideo key layout, initialisation, consensus, FLOPs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tsn_cli.errors import ConfigError


@pytest.fixture(scope="module")
def r18(paddle):
    from tsn_cli.model.tsn import TSN

    m = TSN(depth=18, num_classes=5, dropout=0.4)
    m.eval()
    return m


EXPECTED_KEYS = {18: 107, 34: 187, 50: 267, 101: 522, 152: 777}


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_every_depth_builds_and_runs(paddle, depth):
    from tsn_cli.model.tsn import TSN

    m = TSN(depth=depth, num_classes=400 if depth == 50 else 7)
    m.eval()
    sd = m.state_dict()
    assert len(sd) == EXPECTED_KEYS[depth]
    assert m.backbone.out_channels == (512 if depth < 50 else 2048)
    assert tuple(sd["head.fc.weight"].shape) == (m.backbone.out_channels, m.num_classes)
    assert tuple(sd["head.fc.bias"].shape) == (m.num_classes,)
    x = paddle.to_tensor(np.random.RandomState(0).standard_normal((2, 3, 3, 32, 32)).astype("float32"))
    with paddle.no_grad():
        y = m(x)
    assert tuple(y.shape) == (2, m.num_classes)
    assert np.isfinite(y.numpy()).all()


def test_key_names_follow_paddlevideo(paddle):
    from tsn_cli.model.arch import block_plan

    names50 = [b.name for b in block_plan(50)]
    assert names50[:4] == ["res2a", "res2b", "res2c", "res3a"] and names50[-1] == "res5c" and len(names50) == 16
    names101 = [b.name for b in block_plan(101)]
    assert names101[7:10] == ["res4a", "res4b1", "res4b2"] and "res4b22" in names101 and names101[-1] == "res5c"
    names18 = [b.name for b in block_plan(18)]
    assert names18 == ["res2a", "res2b", "res3a", "res3b", "res4a", "res4b", "res5a", "res5b"]


def test_basic_block_layout_r18(r18):
    sd = r18.state_dict()
    assert tuple(sd["backbone.res2a.conv0._conv.weight"].shape) == (64, 64, 3, 3)
    assert tuple(sd["backbone.res2a.conv1._conv.weight"].shape) == (64, 64, 3, 3)
    # projection on the first block of every stage, as in PaddleClas' ResNet18 (so its weights load)
    assert tuple(sd["backbone.res2a.short._conv.weight"].shape) == (64, 64, 1, 1)
    assert tuple(sd["backbone.res3a.short._conv.weight"].shape) == (128, 64, 1, 1)
    assert "backbone.res2b.short._conv.weight" not in sd
    assert "backbone.res2a.conv2._conv.weight" not in sd
    for suffix in ("weight", "bias", "_mean", "_variance"):
        assert f"backbone.res5b.conv1._batch_norm.{suffix}" in sd


def test_bad_depth_is_a_config_error(paddle):
    from tsn_cli.model.tsn import TSN

    with pytest.raises(ConfigError, match="depth"):
        TSN(depth=20)


def test_initialisation_matches_brief(paddle):
    from tsn_cli.model.tsn import TSN

    m = TSN(depth=18, num_classes=300, fc_std=0.01)
    sd = {k: v.numpy() for k, v in m.state_dict().items()}
    w = sd["backbone.res4a.conv1._conv.weight"]  # [256, 256, 3, 3], KaimingNormal fan_in: std sqrt(2/fan_in)
    assert abs(w.std() / np.sqrt(2.0 / (256 * 9)) - 1) < 0.05
    assert abs(w.mean()) < 0.01 * w.std() * 10
    assert np.all(sd["backbone.res3a.conv0._batch_norm.weight"] == 1)
    assert np.all(sd["backbone.res3a.conv0._batch_norm.bias"] == 0)
    assert np.all(sd["backbone.res3a.conv0._batch_norm._mean"] == 0)
    assert np.all(sd["backbone.res3a.conv0._batch_norm._variance"] == 1)
    fc = sd["head.fc.weight"]
    assert abs(fc.std() / 0.01 - 1) < 0.05 and abs(fc.mean()) < 1e-3
    assert np.all(sd["head.fc.bias"] == 0)


def test_consensus_api(paddle, r18):
    rng = np.random.RandomState(3)
    x = paddle.to_tensor(rng.standard_normal((2, 4, 3, 32, 32)).astype("float32"))
    with paddle.no_grad():
        logits = r18(x).numpy()
        feats = r18.frame_features(x)
        assert tuple(feats.shape) == (2, 4, 512)
        again = r18.classify(paddle.mean(feats, axis=1)).numpy()
        # per-frame logits averaged == logits of averaged features (the FC is linear)
        per_frame = r18.classify(paddle.reshape(feats, [8, 512])).numpy().reshape(2, 4, -1).mean(axis=1)
        # any number of segments/views at run time, including one
        one = r18(x[:, :1]).numpy()
    np.testing.assert_allclose(logits, again, rtol=0, atol=1e-5)
    np.testing.assert_allclose(logits, per_frame, rtol=0, atol=1e-4)
    assert one.shape == (2, 5)
    # frames are processed independently: frame order does not matter
    with paddle.no_grad():
        flipped = r18(x[:, ::-1]).numpy()
    np.testing.assert_allclose(logits, flipped, rtol=0, atol=1e-5)


def test_dropout_train_vs_eval(paddle):
    from tsn_cli.model.tsn import TSN

    m = TSN(depth=18, num_classes=4, dropout=0.0)
    assert m.head.dropout is None
    m2 = TSN(depth=18, num_classes=4, dropout=0.5)
    feat = paddle.ones([64, 512])
    m2.head.eval()
    np.testing.assert_allclose(m2.classify(feat).numpy(), m2.classify(feat).numpy())
    m2.head.train()
    paddle.seed(1)
    dropped = m2.head.dropout(feat).numpy()
    # upscale_in_train: kept values are scaled by 1/(1-p)
    assert set(np.unique(dropped)).issubset({0.0, 2.0}) and 0.3 < (dropped == 0).mean() < 0.7


def test_paddle_free_model_modules_do_not_import_paddle():
    code = (
        "import sys; import tsn_cli.model, tsn_cli.model.arch, tsn_cli.model.checkpoint, tsn_cli.model.flops; "
        "from tsn_cli.model.flops import model_size; model_size(50, 400, 3, 224); "
        "from tsn_cli.model.arch import block_plan; assert block_plan(101)[8].name == 'res4b1'; "
        "assert 'paddle' not in sys.modules, 'paddle imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("module", ["tsn_cli.model.resnet", "tsn_cli.model.tsn"])
def test_model_modules_import_paddle_with_the_thread_count(module):
    # a bare `import paddle` leaves one CPU math thread; the model modules import it through import_paddle()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["TSN_THREADS"] = "3"
    code = f"import os, sys; import {module}; assert 'paddle' in sys.modules; print(os.environ['OMP_NUM_THREADS'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_flops_and_params():
    from tsn_cli.model.flops import model_size

    r50 = model_size(50, 1000, 1, 224)
    assert r50["params"] == 25_557_032  # the well-known ResNet-50 count
    assert 4.0 < r50["gflops_per_frame"] < 4.2
    tsn = model_size(50, 400, 3, 224)
    assert tsn["params"] == 24_327_632
    assert tsn["gflops_per_clip"] == pytest.approx(3 * tsn["gflops_per_frame"] + 2048 * 400 / 1e9)
    # FLOPs scale with the pixel count (448 = 2x224 keeps every feature map exactly 2x); ResNet-18 is ~1.8
    assert model_size(50, 400, 3, 448)["gflops_per_frame"] == pytest.approx(4 * r50["gflops_per_frame"], rel=1e-9)
    assert 1.7 < model_size(18, 1000, 1, 224)["gflops_per_frame"] < 1.9
    with pytest.raises(ConfigError):
        model_size(20, 10, 3, 224)


@pytest.mark.parametrize("depth", [18, 101])
def test_param_count_matches_built_model(paddle, depth):
    from tsn_cli.model.flops import model_size
    from tsn_cli.model.tsn import TSN

    m = TSN(depth=depth, num_classes=101)
    trainable = sum(int(np.prod(p.shape)) for p in m.parameters() if not p.stop_gradient)
    assert trainable == model_size(depth, 101, 3, 224)["params"]

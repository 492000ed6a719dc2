"""Checkpoint tests: safe unpickling, PaddleVideo-compatible saving, safetensors, load_weights reports."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.helpers_model import golden_weights
from tsn_cli.errors import CheckpointError, TsnError


@pytest.fixture(scope="module")
def ck():
    from tsn_cli.model import checkpoint

    return checkpoint


@pytest.fixture(scope="module")
def r18_state(paddle):
    """A deterministic ResNet-18 TSN state dict with 400 classes (numpy), as a PaddleVideo checkpoint would hold."""
    from tsn_cli.model.tsn import TSN

    m = TSN(depth=18, num_classes=400)
    return golden_weights({k: tuple(v.shape) for k, v in m.state_dict().items()}, seed=42)


def _tsn(depth=18, num_classes=400, **kw):
    from tsn_cli.model.tsn import TSN

    return TSN(depth=depth, num_classes=num_classes, **kw)


def _numpy_state(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _globals_in(path: Path) -> set[str]:
    """module.name of every global a pickle references (recorded by an allow-list unpickler)."""
    from tsn_cli.model import checkpoint

    seen: set[str] = set()

    class Recorder(checkpoint._SafeUnpickler):
        def find_class(self, module, name):
            seen.add(f"{module}.{name}")
            return super().find_class(module, name)

    Recorder(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    return seen


# ----------------------------------------------------------------------------------------- format / round trips
def test_save_state_is_paddle_loadable_plain_dict(paddle, ck, r18_state, tmp_path):
    path = ck.save_state(r18_state, tmp_path / "m.pdparams")
    raw = path.read_bytes()
    assert raw[:2] == b"\x80\x04"  # protocol 4, as paddle.save
    assert _globals_in(path) == {"numpy.core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype"}
    loaded = paddle.load(str(path))
    assert isinstance(loaded, dict) and list(loaded) == list(r18_state)
    for k, v in r18_state.items():
        np.testing.assert_array_equal(loaded[k].numpy(), v)
    # and with plain pickle (what Paddle 2.x's paddle.load does): a dict of numpy arrays
    plain = pickle.loads(raw)
    assert type(plain) is dict and isinstance(plain["head.fc.bias"], np.ndarray)
    # a model built the PaddleVideo way accepts it directly
    m = _tsn()
    missing, unexpected = m.set_state_dict(loaded)
    assert not missing and not unexpected
    np.testing.assert_array_equal(m.state_dict()["head.fc.weight"].numpy(), r18_state["head.fc.weight"])
    assert not list(tmp_path.glob(".*.tmp")), "atomic write left a temp file"


def test_save_state_accepts_tensors_and_roundtrips(paddle, ck, tmp_path):
    m = _tsn(num_classes=3)
    ck.save_state(m.state_dict(), tmp_path / "t.pdparams")
    back = ck.load_state(tmp_path / "t.pdparams")
    ref = _numpy_state(m)
    assert list(back) == list(ref)
    for k in ref:
        assert back[k].dtype == np.float32
        np.testing.assert_array_equal(back[k], ref[k])


@pytest.mark.parametrize("protocol", [2, 4])
def test_reads_paddle_save_output_with_name_table(paddle, ck, tmp_path, protocol):
    m = _tsn(num_classes=6)
    path = tmp_path / f"pv{protocol}.pdparams"
    paddle.save(m.state_dict(), str(path), protocol=protocol)
    assert "StructuredToParameterName@@" in pickle.loads(path.read_bytes())
    state = ck.load_state(path)
    assert "StructuredToParameterName@@" not in state
    ref = _numpy_state(m)
    assert set(state) == set(ref)
    for k in ref:
        np.testing.assert_array_equal(state[k], ref[k])


def test_reads_nested_paddle_objects_and_optimizer_state(paddle, ck, tmp_path):
    lin = paddle.nn.Linear(3, 2)
    sched = paddle.optimizer.lr.PiecewiseDecay([1], [0.1, 0.01])
    opt = paddle.optimizer.Momentum(learning_rate=sched, momentum=0.9, parameters=lin.parameters())
    lin(paddle.ones([2, 3])).sum().backward()
    opt.step()
    sched.step()
    paddle.save(opt.state_dict(), str(tmp_path / "o.pdopt"))
    got = ck.load_object(tmp_path / "o.pdopt")
    assert got["LR_Scheduler"] == {"last_epoch": 1, "last_lr": 0.01}
    vel = [k for k in got if k.endswith("_velocity_0")]
    assert len(vel) == 2 and all(isinstance(got[k], np.ndarray) for k in vel)
    # paddle.save of a non-state-dict object: Tensors become tuple((name, ndarray)), OrderedDicts and np scalars
    paddle.save({"model": lin.state_dict(), "epoch": 3, "lr": np.float64(0.5)}, str(tmp_path / "n.pdparams"))
    nested = ck.load_object(tmp_path / "n.pdparams")
    assert nested["epoch"] == 3 and nested["lr"] == 0.5
    name, arr = nested["model"]["weight"]
    assert isinstance(name, str) and arr.shape == (3, 2)
    with pytest.raises(CheckpointError, match="no tensors"):
        ck.load_state(tmp_path / "n.pdparams")
    paddle.save({"w": lin.weight, "b": lin.bias, "extra": {"a": 1}}, str(tmp_path / "t.pdparams"))
    assert set(ck.load_state(tmp_path / "t.pdparams")) >= {"w", "b"}


def test_save_object_roundtrip_into_optimizer(paddle, ck, tmp_path):
    lin = paddle.nn.Linear(3, 2)
    opt = paddle.optimizer.Momentum(
        learning_rate=paddle.optimizer.lr.PiecewiseDecay([1], [0.1, 0.01]), momentum=0.9,
        parameters=lin.parameters())
    lin(paddle.ones([2, 3])).sum().backward()
    opt.step()
    opt._learning_rate.step()
    state = opt.state_dict()
    ck.save_object(state, tmp_path / "o.pdopt")
    back = ck.load_object(tmp_path / "o.pdopt")
    assert back["LR_Scheduler"]["last_epoch"] == 1
    via_paddle = paddle.load(str(tmp_path / "o.pdopt"))
    assert set(via_paddle) == set(state)
    opt2 = paddle.optimizer.Momentum(
        learning_rate=paddle.optimizer.lr.PiecewiseDecay([1], [0.1, 0.01]), momentum=0.9,
        parameters=lin.parameters())
    opt2.set_state_dict(back)
    assert opt2.get_lr() == pytest.approx(0.01)


def test_split_big_params_are_joined(ck, tmp_path):
    whole = np.arange(12, dtype=np.float32).reshape(3, 4)
    obj = {"a@@.0": whole.ravel()[:5], "a@@.1": whole.ravel()[5:], "b": np.ones(2, np.float32),
           "UnpackBigParamInfor@@": {"a": {"OriginShape": (3, 4), "slices": ["a@@.0", "a@@.1"]}}}
    (tmp_path / "big.pdparams").write_bytes(pickle.dumps(obj, protocol=2))
    state = ck.load_state(tmp_path / "big.pdparams")
    assert set(state) == {"a", "b"}
    np.testing.assert_array_equal(state["a"], whole)


def test_safetensors_roundtrip(paddle, ck, r18_state, tmp_path):
    path = ck.save_state(r18_state, tmp_path / "m.safetensors")
    from safetensors.numpy import load_file

    assert set(load_file(str(path))) == set(r18_state)
    back = ck.load_state(path)
    for k, v in r18_state.items():
        np.testing.assert_array_equal(back[k], v)
    m = _tsn()
    rep = ck.load_weights(m, path)
    assert len(rep.loaded) == len(r18_state) and not rep.skipped_shape
    np.testing.assert_array_equal(m.state_dict()["backbone.conv._conv.weight"].numpy(),
                                  r18_state["backbone.conv._conv.weight"])
    # content, not suffix, decides the format
    (tmp_path / "renamed.pdparams").write_bytes(path.read_bytes())
    assert set(ck.load_state(tmp_path / "renamed.pdparams")) == set(r18_state)


# ----------------------------------------------------------------------------------------- safety
class _Payload:
    """Pickles to a call of os.system that would create a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').write('x')",))


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("payload", [_Payload, _EvalPayload])
def test_malicious_pickle_is_refused_and_never_runs(ck, tmp_path, protocol, payload):
    marker = tmp_path / "PWNED"
    evil = {"backbone.conv._conv.weight": np.zeros((64, 3, 7, 7), np.float32), "x": payload(marker)}
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps(evil, protocol=protocol))
    for reader in (ck.load_state, ck.load_object):
        with pytest.raises(CheckpointError) as err:
            reader(path)
        msg = str(err.value)
        assert str(path) in msg and "refusing" in msg and "\n" not in msg
    with pytest.raises(CheckpointError):
        ck.load_weights(_tsn(), path)
    assert not marker.exists(), "the payload ran"


def test_other_dangerous_globals_are_refused(ck, tmp_path):
    # a hand-written protocol-2 pickle calling subprocess.check_output / builtins.getattr: refused by name
    for module, name in (("subprocess", "check_output"), ("builtins", "getattr"), ("numpy", "load"),
                         ("numpy.lib.npyio", "load"), ("collections", "defaultdict")):
        blob = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."
        (tmp_path / "g.pdparams").write_bytes(blob)
        with pytest.raises(CheckpointError, match=f"{module}.{name}"):
            ck.load_object(tmp_path / "g.pdparams")


def test_object_arrays_are_refused(ck, tmp_path):
    (tmp_path / "o.pdparams").write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}, protocol=4))
    with pytest.raises(CheckpointError, match="refusing"):
        ck.load_state(tmp_path / "o.pdparams")


def test_truncated_garbage_and_missing_files(ck, r18_state, tmp_path):
    good = ck.save_state({k: r18_state[k] for k in list(r18_state)[:12]}, tmp_path / "g.pdparams").read_bytes()
    cases = {
        "trunc_half.pdparams": good[: len(good) // 2],
        "trunc_end.pdparams": good[:-1],
        "trunc_head.pdparams": good[:40],
        "empty.pdparams": b"",
        "garbage.pdparams": np.random.RandomState(0).bytes(4096),
        "text.pdparams": b"<html>404 Not Found</html>\n",
        "zip.pdparams": b"PK\x03\x04" + b"\x00" * 100,
    }
    st = ck.save_state({"a": np.ones((4, 4), np.float32)}, tmp_path / "s.safetensors").read_bytes()
    cases["trunc.safetensors"] = st[:-8]
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            ck.load_state(p)
        msg = str(err.value)
        assert str(p) in msg and "\n" not in msg and "Traceback" not in msg, (name, msg)
    with pytest.raises(CheckpointError, match="no such file"):
        ck.load_state(tmp_path / "nope.pdparams")
    with pytest.raises(CheckpointError, match="is a folder"):
        ck.load_state(tmp_path)


# ----------------------------------------------------------------------------------------- load_weights
def test_full_checkpoint_into_same_model(paddle, ck, r18_state, tmp_path):
    path = ck.save_state(r18_state, tmp_path / "tsn.pdparams")
    m = _tsn()
    rep = ck.load_weights(m, path, part="full")
    assert len(rep.loaded) == 107 and not rep.skipped_shape and not rep.missing and not rep.unexpected
    assert rep.summary().startswith("loaded 107/107 tensors")
    got = _numpy_state(m)
    for k, v in r18_state.items():
        np.testing.assert_array_equal(got[k], v)


def test_400_class_checkpoint_into_101_class_model_skips_fc(paddle, ck, r18_state, tmp_path):
    path = ck.save_state(r18_state, tmp_path / "k400.pdparams")
    m = _tsn(num_classes=101)
    fc_before = m.state_dict()["head.fc.weight"].numpy().copy()
    rep = ck.load_weights(m, path, part="full")
    assert len(rep.loaded) == 105
    assert rep.skipped_shape == [("head.fc.weight", (512, 400), (512, 101)), ("head.fc.bias", (400,), (101,))]
    assert not rep.missing and not rep.unexpected
    s = rep.summary()
    assert "skipped 2 for shape" in s and "head.fc.weight [512, 400] vs [512, 101]" in s and "\n" not in s
    got = _numpy_state(m)
    np.testing.assert_array_equal(got["head.fc.weight"], fc_before)  # kept its init
    np.testing.assert_array_equal(got["backbone.res5b.conv1._conv.weight"],
                                  r18_state["backbone.res5b.conv1._conv.weight"])


@pytest.mark.parametrize("prefixed", [False, True])
def test_backbone_only_file_with_or_without_prefix(paddle, ck, r18_state, tmp_path, prefixed):
    backbone = {k[len("backbone."):]: v for k, v in r18_state.items() if k.startswith("backbone.")}
    if prefixed:
        backbone = {"backbone." + k: v for k, v in backbone.items()}
    # an ImageNet classifier as in ResNet50_pretrain.pdparams (`out.*`) is ignored
    rng = np.random.RandomState(0)
    backbone["out.weight"] = rng.standard_normal((512, 1000)).astype(np.float32)
    backbone["out.bias"] = np.zeros(1000, np.float32)
    path = ck.save_state(backbone, tmp_path / "ResNet18_pretrain.pdparams")
    m = _tsn(num_classes=10)
    head_before = m.state_dict()["head.fc.weight"].numpy().copy()
    rep = ck.load_weights(m, path, part="backbone")
    assert len(rep.loaded) == 105 and rep.total == 105
    assert not rep.missing and not rep.skipped_shape
    assert sorted(rep.unexpected) == ["out.bias", "out.weight"]
    got = _numpy_state(m)
    np.testing.assert_array_equal(got["backbone.res2a.short._batch_norm._variance"],
                                  r18_state["backbone.res2a.short._batch_norm._variance"])
    np.testing.assert_array_equal(got["head.fc.weight"], head_before)


def test_backbone_part_from_full_checkpoint_ignores_head(paddle, ck, r18_state, tmp_path):
    path = ck.save_state(r18_state, tmp_path / "full.pdparams")
    rep = ck.load_weights(_tsn(num_classes=7), path, part="backbone")
    assert len(rep.loaded) == 105 and sorted(rep.unexpected) == ["head.fc.bias", "head.fc.weight"]


def test_other_architecture_is_refused_and_model_untouched(paddle, ck, tmp_path):
    m34 = _tsn(depth=34, num_classes=5)
    path = ck.save_state(m34.state_dict(), tmp_path / "r34.pdparams")
    m18 = _tsn(depth=18, num_classes=5)
    before = _numpy_state(m18)
    with pytest.raises(CheckpointError) as err:
        ck.load_weights(m18, path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    after = _numpy_state(m18)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # the other way round (a ResNet-18 file into a ResNet-34) fails too
    with pytest.raises(CheckpointError, match="another"):
        ck.load_weights(m34, ck.save_state(m18.state_dict(), tmp_path / "r18.pdparams"))
    # and ResNet-50 <-> 34, which share many names and BN shapes
    m50 = _tsn(depth=50, num_classes=5)
    with pytest.raises(CheckpointError, match="another"):
        ck.load_weights(m50, path)
    with pytest.raises(CheckpointError, match="another"):
        ck.load_weights(m34, ck.save_state(m50.state_dict(), tmp_path / "r50.pdparams"), part="backbone")
    # an unrelated file (some other network's weights) matches almost nothing
    other = ck.save_state({"encoder.layer.0.weight": np.ones((8, 8), np.float32)}, tmp_path / "bert.pdparams")
    with pytest.raises(CheckpointError, match="only 0 of"):
        ck.load_weights(m18, other, part="backbone")


def test_r50_paddlevideo_layout_file_loads(paddle, ck, tmp_path):
    """A ResNet-50 TSN file written by paddle.save (PaddleVideo layout, name table, K400 head)."""
    m = _tsn(depth=50, num_classes=400)
    paddle.save(m.state_dict(), str(tmp_path / "TSN_k400.pdparams"))
    target = _tsn(depth=50, num_classes=101)
    rep = ck.load_weights(target, tmp_path / "TSN_k400.pdparams")
    assert len(rep.loaded) == 265 and len(rep.skipped_shape) == 2 and rep.total == 267
    np.testing.assert_array_equal(target.state_dict()["backbone.res4f.conv2._batch_norm._mean"].numpy(),
                                  m.state_dict()["backbone.res4f.conv2._batch_norm._mean"].numpy())


def test_failed_save_keeps_previous_file(ck, tmp_path):
    path = ck.save_state({"a": np.ones(3, np.float32)}, tmp_path / "keep.pdparams")
    before = path.read_bytes()
    with pytest.raises(TsnError, match="cannot save a value of type object"):
        ck.save_state({"a": object()}, path)
    with pytest.raises(TsnError, match="cannot save a value of type BytesIO"):
        ck.save_object({"a": io.BytesIO()}, path)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))

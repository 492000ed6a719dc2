"""`tsn export`: the exported static model (and ONNX) reproduces dygraph logits for any batch and view count;
a failed export leaves nothing behind; `--json` stdout stays clean."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from helpers_deploy import LABELS, NUM_CLASSES, TARGET, dygraph_model, tiny_config, tiny_weights  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(cfg, weights, export dir, ExportResult) of the tiny model, exported with ONNX."""
    from tsn_cli.deploy.export import export_model

    tmp = tmp_path_factory.mktemp("export")
    cfg = tiny_config(tmp)
    w = tiny_weights(cfg, tmp / "w.pdparams")
    # Random fc weights (not the bias-dominated head) make the parity check sensitive to every layer.
    from tsn_cli.model.checkpoint import load_state, save_state

    state = load_state(w)
    state["head.fc.weight"] = np.random.RandomState(3).standard_normal(state["head.fc.weight"].shape).astype("float32") * 0.05
    save_state(state, w)
    res = export_model(cfg, w, tmp / "export", onnx=True)
    return cfg, w, tmp / "export", res


def test_export_files_and_meta(exported):
    cfg, _, out, res = exported
    names = sorted(p.name for p in out.iterdir())
    assert "TSN.pdiparams" in names and ("TSN.json" in names or "TSN.pdmodel" in names)
    assert {"TSN.onnx", "tsn.yaml", "config.yaml"} <= set(names)
    assert not list(out.parent.glob(".export.*")), "staging folder left behind"
    meta = yaml.safe_load((out / "tsn.yaml").read_text())
    assert meta["num_classes"] == NUM_CLASSES and meta["target_size"] == TARGET
    assert meta["label_names"] == LABELS
    assert meta["seg_num"] == cfg.eval.seg_num or meta["seg_num"] == cfg.model.seg_num
    assert res.max_abs_diff < 1e-4 and res.onnx_max_abs_diff is not None and res.onnx_max_abs_diff < 1e-4


@pytest.mark.parametrize("n,v", [(1, 3), (2, 30), (3, 1)])
def test_exported_matches_dygraph_for_any_batch_and_views(exported, n, v):
    """The graph has no batch or view count baked in (TSN reshapes with [-1, T, C]): V=3 and V=30 both work."""
    from tsn_cli.deploy.predict import OrtEngine, PaddleEngine
    from tsn_cli.engine.device import import_paddle

    paddle = import_paddle()
    cfg, w, out, _ = exported
    x = np.random.RandomState(n * 100 + v).standard_normal((n, v, 3, TARGET, TARGET)).astype("float32")
    with paddle.no_grad():
        ref = dygraph_model(cfg, w)(paddle.to_tensor(x)).numpy()
    scale = max(1.0, float(np.abs(ref).max()))
    for engine in (PaddleEngine(out), OrtEngine(out)):
        got = engine.run(x)
        assert got.shape == (n, NUM_CLASSES)
        assert np.abs(got - ref).max() <= 1e-4 * scale, type(engine).__name__


def test_failed_export_leaves_nothing_and_keeps_old(exported, tmp_path):
    """A failing self-check removes the staging folder and leaves an existing export untouched."""
    from tsn_cli.deploy.export import export_model
    from tsn_cli.errors import TsnError

    cfg, w, _, _ = exported
    target = tmp_path / "exp"
    with pytest.raises(TsnError, match="export check failed"):
        export_model(cfg, w, target, tolerance=-1.0)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(TsnError):
        export_model(cfg, w, target, tolerance=-1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]
    assert (target / "keep.txt").read_text() == "old"


def test_export_cli_json_is_clean(exported, tsn, tmp_path):
    """`tsn export --json` stdout is exactly one JSON document (no stray oneDNN print); bad weights -> exit 2."""
    cfg, w, _, _ = exported
    cfg_file = tmp_path / "cfg.yaml"
    from tsn_cli.config import save_config

    save_config(cfg, cfg_file)
    r = tsn("export", "--weights", w, "--config", cfg_file, "--output", tmp_path / "out", "--seg-num", 4, "--json", check=True)
    doc = json.loads(r.stdout)
    assert doc["max_abs_diff"] < 1e-4 and Path(doc["output"]).is_dir()
    assert yaml.safe_load((tmp_path / "out" / "tsn.yaml").read_text())["seg_num"] == 4
    bad = tmp_path / "bad.pdparams"
    bad.write_bytes(b"not a checkpoint")
    r = tsn("export", "--weights", bad, "--config", cfg_file, "--output", tmp_path / "out2")
    assert r.returncode == 2 and "bad.pdparams" in r.stderr + r.stdout and "Traceback" not in r.stderr
    assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2*"))

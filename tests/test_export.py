"""`tsn export`: the exported static model (and ONNX) reproduces dygraph logits for any batch and view count;
a failed export leaves nothing behind; `--json` stdout stays clean."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers_deploy import LABELS, NUM_CLASSES, TARGET, dygraph_model


def test_export_files_and_meta(tiny_export):
    cfg, out, res = tiny_export.cfg, tiny_export.dir, tiny_export.result
    names = sorted(p.name for p in out.iterdir())
    assert "TSN.pdiparams" in names and ("TSN.json" in names or "TSN.pdmodel" in names)
    assert {"TSN.onnx", "tsn.yaml", "config.yaml"} <= set(names)
    assert not list(out.parent.glob(".export.*")), "staging folder left behind"
    meta = yaml.safe_load((out / "tsn.yaml").read_text())
    assert meta["num_classes"] == NUM_CLASSES and meta["target_size"] == TARGET
    assert meta["label_names"] == LABELS
    assert meta["seg_num"] == cfg.test_seg_num
    assert res.max_abs_diff < 1e-4 and res.onnx_max_abs_diff is not None and res.onnx_max_abs_diff < 1e-4


@pytest.mark.parametrize("n,v", [(1, 3), (2, 30), (3, 1)])
def test_exported_matches_dygraph_for_any_batch_and_views(tiny_export, n, v):
    """The graph has no batch or view count baked in (TSN reshapes with [-1, T, C]): V=3 and V=30 both work."""
    from tsn_cli.deploy.engines import OrtEngine, PaddleEngine
    from tsn_cli.runtime import import_paddle

    paddle = import_paddle()
    cfg, w, out = tiny_export.cfg, tiny_export.weights, tiny_export.dir
    x = np.random.RandomState(n * 100 + v).standard_normal((n, v, 3, TARGET, TARGET)).astype("float32")
    with paddle.no_grad():
        ref = dygraph_model(cfg, w)(paddle.to_tensor(x)).numpy()
    scale = max(1.0, float(np.abs(ref).max()))
    for engine in (PaddleEngine(out), OrtEngine(out)):
        got = engine.run(x)
        assert got.shape == (n, NUM_CLASSES)
        assert np.abs(got - ref).max() <= 1e-4 * scale, type(engine).__name__


def test_failed_export_leaves_nothing_and_keeps_old(tiny_export, tmp_path):
    """A failing self-check removes the staging folder and leaves an existing export untouched."""
    from tsn_cli.deploy.export import export_model
    from tsn_cli.errors import TsnError

    cfg, w = tiny_export.cfg, tiny_export.weights
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


def test_export_cli_json_is_clean(tiny_export, tsn, tmp_path):
    """`tsn export --json` stdout is exactly one JSON document (no stray oneDNN print); bad weights -> exit 2."""
    w, cfg_file = tiny_export.weights, tiny_export.cfg_file
    r = tsn("export", "--weights", w, "--config", cfg_file, "--output", tmp_path / "out", "--seg-num", 4, "--json",
            check=True)
    doc = json.loads(r.stdout)
    assert doc["max_abs_diff"] < 1e-4 and Path(doc["output"]).is_dir()
    assert yaml.safe_load((tmp_path / "out" / "tsn.yaml").read_text())["seg_num"] == 4
    bad = tmp_path / "bad.pdparams"
    bad.write_bytes(b"not a checkpoint")
    r = tsn("export", "--weights", bad, "--config", cfg_file, "--output", tmp_path / "out2")
    assert r.returncode == 2 and "bad.pdparams" in r.stderr + r.stdout and "Traceback" not in r.stderr
    assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2*"))

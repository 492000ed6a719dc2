"""Weights that do not fit the model are refused, never run (issue 12, items 1 and 2).

eval/export/predict and `train --resume` need every tensor of the model from the checkpoint: a class-count or
depth mismatch exits 2 with one line naming the tensor, both shapes and the fix. Only fine-tuning may leave the
head out, and says so. A checkpoint alone (no config.yaml beside it) brings its own depth and class count.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers_cli import run_tsn
from tests.helpers_deploy import LABELS, TOP_CLASS, tiny_config, tiny_weights, write_clip
from tests.helpers_model import golden_weights
from tests.helpers_train import make_tiny_data, run_train, write_tiny_config

WIDE = {"COLUMNS": "1000"}  # no wrapping: a one-line message must be one line of stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A training output folder (TSN_best.pdparams + config.yaml: ResNet-18, 4 classes, 32 px) and a clip."""
    from tsn_cli.config import save_config

    root = tmp_path_factory.mktemp("weights")
    out = root / "run"
    out.mkdir()
    cfg = tiny_config(out)
    tiny_weights(cfg, out / "TSN_best.pdparams")
    save_config(cfg, out / "config.yaml")
    return {"root": root, "out": out, "best": out / "TSN_best.pdparams", "labels": out / "labels.txt",
            "clip": write_clip(root / "clip.avi")}


def _error_line(proc) -> str:
    """The single `error:` line of stderr (asserts there is exactly one and no traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _lone_copy(src: Path, folder: Path, name: str = "TSN_best.pdparams") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, folder / name))


@pytest.mark.parametrize("command", ["eval", "export", "predict"])
def test_class_count_mismatch_is_refused(run, command):
    """--num-classes (or -o model.num_classes) against a 4-class checkpoint: exit 2, tensor + shapes + fix."""
    args = {
        "eval": ["eval", "--weights", run["best"], "--num-classes", "10"],
        "export": ["export", "--weights", run["best"], "--num-classes", "10", "--output", run["root"] / "exp"],
        "predict": ["predict", run["clip"], "--weights", run["best"], "-o", "model.num_classes=10"],
    }[command]
    p = run_tsn(*args, env=WIDE)
    assert p.returncode == 2, p.stdout + p.stderr
    line = _error_line(p)
    assert "head.fc.weight is [512, 4] in the checkpoint, [512, 10] in the model" in line
    assert "the checkpoint has 4 classes, the model 10" in line
    assert "tsn train --weights" in line and ("drop --num-classes" in line or "drop -o model.num_classes" in line)
    assert not (run["root"] / "exp").exists()  # export wrote nothing (no model with a random head)


def test_depth_mismatch_is_refused(run):
    p = run_tsn("eval", "--weights", run["best"], "--depth", "50", env=WIDE)
    assert p.returncode == 2
    line = _error_line(p)
    assert "--depth 50 does not match" in line and "ResNet-18 (basic blocks [2, 2, 2, 2] per stage)" in line
    assert "the model a ResNet-50" in line and "drop --depth" in line


def test_config_beside_of_another_model_is_refused(run):
    """A checkpoint copied next to another run's config.yaml: the conflict names both files."""
    from tsn_cli.config import load_config, save_config

    other = run["root"] / "other"
    w = _lone_copy(run["best"], other)
    save_config(load_config(run["out"] / "config.yaml", ["model.num_classes=6"]), other / "config.yaml")
    p = run_tsn("predict", run["clip"], "--weights", w, env=WIDE)
    assert p.returncode == 2
    line = _error_line(p)
    assert f"{other / 'config.yaml'} (model.num_classes) does not match {w}" in line
    assert "the checkpoint has 4 classes, the model 6" in line and "--config" in line


def test_lone_copy_predicts_with_class_ids_or_labels(run):
    """Weights alone in a folder: depth and classes from the checkpoint, class ids as labels, --labels names."""
    w = _lone_copy(run["best"], run["root"] / "copy")
    p = run_tsn("predict", run["clip"], "--weights", w, "--json", env=WIDE)
    assert p.returncode == 0, p.stderr
    top = json.loads(p.stdout)[0]["top_k"]
    assert top[0]["class_id"] == TOP_CLASS and len(top) == 4
    assert all(t["label"] == str(t["class_id"]) for t in top)
    assert f"no config.yaml beside {w}: ResNet-18, 4 classes read from the checkpoint" in p.stderr
    p = run_tsn("predict", run["clip"], "--weights", w, "--labels", run["labels"], "--json")
    assert p.returncode == 0, p.stderr
    assert [t["label"] for t in json.loads(p.stdout)[0]["top_k"]][0] == LABELS[TOP_CLASS]
    bad = run["root"] / "three.txt"
    bad.write_text("a\nb\nc\n")
    p = run_tsn("predict", run["clip"], "--weights", w, "--labels", bad, env=WIDE)
    assert p.returncode == 2
    assert "has 3 class names but the model has 4 classes" in _error_line(p)


def test_lone_copy_eval_without_list_suggests_config(run):
    w = _lone_copy(run["best"], run["root"] / "copy_eval")
    p = run_tsn("eval", "--weights", w, env=WIDE)
    assert p.returncode == 2
    line = _error_line(p)
    assert f"no config.yaml was found beside {w}" in line and "--list FILE" in line and "--config" in line


def test_paddlevideo_r101_checkpoint_alone(run):
    """PaddleVideo's key layout (ResNet-101, 400 classes; the built-in default model is ResNet-50) with nothing
    beside it: the depth comes from the block names and every tensor loads."""
    keys = json.loads((Path(__file__).parent / "golden" / "pv_keys_r101.json").read_text())["keys"]
    from tsn_cli.model.checkpoint import save_state

    folder = run["root"] / "pv"
    folder.mkdir()
    w = save_state(golden_weights({k: tuple(s) for k, s in keys}), folder / "TSN_k400.pdparams")
    p = run_tsn("predict", run["clip"], "--weights", w, "--json", "--top-k", "3",
                "-o", "augment.short_side=72", "-o", "augment.target_size=64", env=WIDE)
    assert p.returncode == 0, p.stderr
    assert "ResNet-101, 400 classes read from the checkpoint" in p.stderr
    assert f"loaded {len(keys)}/{len(keys)} tensors; skipped 0 for shape; missing 0" in p.stderr
    top = json.loads(p.stdout)[0]["top_k"]
    assert len(top) == 3 and all(t["label"] == str(t["class_id"]) and 0 <= t["class_id"] < 400 for t in top)


def test_backbone_only_file_is_refused_by_predict(run):
    """An ImageNet-style backbone file given as --weights: the loader names the missing head (no random head)."""
    from tsn_cli.model.checkpoint import load_state, save_state

    state = {k: v for k, v in load_state(run["best"]).items() if not k.startswith("head.")}
    folder = run["root"] / "backbone"
    folder.mkdir()
    w = save_state(state, folder / "ResNet18_pretrain.pdparams")
    p = run_tsn("predict", run["clip"], "--weights", w, env=WIDE)
    assert p.returncode == 2
    line = _error_line(p)
    assert "head.fc.weight is not in the checkpoint" in line and "tsn train --pretrained" in line


def test_weights_folder_and_pdopt(run):
    p = run_tsn("predict", run["clip"], "--weights", run["out"], "--json", env=WIDE)
    assert p.returncode == 0, p.stderr
    assert f"--weights {run['out']} is a folder: using its TSN_best.pdparams" in p.stderr
    assert json.loads(p.stdout)[0]["top_k"][0]["label"] == LABELS[TOP_CLASS]  # its config.yaml was used
    p = run_tsn("eval", "--weights", run["out"] / "TSN_best.pdopt", env=WIDE)
    assert p.returncode == 2
    line = _error_line(p)
    assert "is optimizer state" in line and f"use {run['best']}" in line
    empty = run["root"] / "empty_run"
    empty.mkdir()
    (empty / "TSN_epoch_00004.pdparams").write_bytes(b"")
    p = run_tsn("export", "--weights", empty, "--output", run["root"] / "exp2", env=WIDE)
    assert p.returncode == 2
    assert "is a folder without TSN_best.pdparams (it has TSN_epoch_00004.pdparams" in _error_line(p)


def test_export_self_check_compares_with_the_checkpoint(run, tmp_path, monkeypatch):
    """Library level: export refuses a model built for other classes, and a model whose head is not the
    checkpoint's (here: a loader that leaves the head random) cannot pass the parity check."""
    import tsn_cli.model.checkpoint as ck
    from tsn_cli.config import with_values
    from tsn_cli.deploy.export import export_model
    from tsn_cli.errors import CheckpointError, TsnError

    cfg = tiny_config(tmp_path)
    with pytest.raises(CheckpointError, match=r"head.fc.weight is \[512, 4\] in the checkpoint, \[512, 10\]"):
        export_model(with_values(cfg, {"model.num_classes": 10}), run["best"], tmp_path / "a")
    real = ck.load_weights

    def lenient_head(model, path, **kw):
        rep = real(model, path, **kw)
        model.head.fc.weight.set_value(np.random.RandomState(0).standard_normal((512, 4)).astype("float32"))
        return rep

    monkeypatch.setattr(ck, "load_weights", lenient_head)
    with pytest.raises(TsnError, match="the model does not hold .*head.fc.weight"):
        export_model(cfg, run["best"], tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 1-epoch tiny run (ResNet-18, 3 classes) with its checkpoints."""
    root = tmp_path_factory.mktemp("wtrain")
    data = make_tiny_data(root / "data", per_class_train=2, per_class_val=1)
    cfg = write_tiny_config(root / "c.yaml", data, root / "out", epochs=1)
    p = run_train("--config", cfg)
    assert p.returncode == 0, p.stdout + p.stderr
    return {"root": root, "cfg": cfg, "out": root / "out"}


def test_resume_into_another_class_count_is_refused(trained):
    p = run_train("--config", trained["cfg"], "--num-classes", "5", "--epochs", "2", "--resume", "auto", env=WIDE)
    assert p.returncode == 2, p.stdout + p.stderr
    line = _error_line(p)
    assert line.startswith(f"error: --resume: {trained['out'] / 'TSN_epoch_00001.pdparams'}: head.fc.weight")
    assert "[512, 3] in the checkpoint, [512, 5] in the model (the checkpoint has 3 classes, the model 5)" in line
    assert f"resume with the settings the run started with ({trained['out'] / 'config.yaml'})" in line
    assert not (trained["out"] / "TSN_epoch_00002.pdparams").exists()


def test_finetune_to_another_class_count_says_the_head_is_new(trained):
    out2 = trained["root"] / "finetune"
    p = run_train("--config", trained["cfg"], "--num-classes", "5", "--weights", trained["out"], "--output", out2,
                  "--epochs", "1", "-o", "train.val_interval=0", env=WIDE)
    assert p.returncode == 0, p.stdout + p.stderr
    text = p.stdout + p.stderr
    assert f"--weights {trained['out']} is a folder: using its TSN_best.pdparams" in text
    notes = [ln for ln in text.splitlines() if "fine-tuning from" in ln]
    assert len(notes) == 1, text
    assert "loaded 105/107 tensors; left at random init: head.fc.weight, head.fc.bias" in notes[0]
    assert "the checkpoint has 3 classes, the model 5: a new head is trained" in notes[0]
    from tsn_cli.model.checkpoint import load_state

    assert load_state(out2 / "TSN_best.pdparams")["head.fc.weight"].shape == (512, 5)


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_infer_architecture_every_depth(depth):
    """Depth from the block names (PaddleVideo's for 50/101/152, from its golden key lists), block type from conv2,
    classes from head.fc.weight; with or without the `backbone.` prefix; an incomplete set of blocks is unknown."""
    from tests.helpers_model import skeleton_state
    from tsn_cli.model.arch import infer_architecture

    golden = Path(__file__).parent / "golden" / f"pv_keys_r{depth}.json"
    if golden.is_file():
        keys = json.loads(golden.read_text())["keys"]
        state = {k: np.zeros(s if k.startswith("head.") else 1, np.float32) for k, s in keys}
    else:
        state = skeleton_state(depth, 400)
    arch = infer_architecture(state)
    assert (arch.depth, arch.num_classes, arch.bottleneck) == (depth, 400, depth >= 50)
    bare = {k.removeprefix("backbone."): v for k, v in state.items()}
    assert infer_architecture(bare).depth == depth
    cut = {k: v for k, v in state.items() if ".res5c." not in k and ".res5b." not in k}
    assert infer_architecture(cut).depth is None and "unknown ResNet" in infer_architecture(cut).describe()

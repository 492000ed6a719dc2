"""Issue 12, items 7 and 8 through the CLI: a run records the lists and class names it used and `tsn eval` names
the list it scores (out-of-range labels and all-unreadable lists are errors); the LR schedule follows --epochs
and every schedule surprise (late boundaries, a resume with another schedule) is one warning line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers_cli import run_tsn
from tests.helpers_eval import corrupt_video
from tests.helpers_train import make_tiny_data, write_tiny_config
from tests.helpers_train import run_train as _run_train

NAMES = ["alpha", "beta", "gamma"]


def run_train(*args):
    """`tsn train` on a wide terminal: long temporary paths are never folded inside a word."""
    return _run_train(*args, env={"COLUMNS": "400"})


def _flat(proc) -> str:
    """stdout + stderr with rich's line wrapping undone."""
    return " ".join((proc.stdout + proc.stderr).split())


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """The config file's dataset (d/, with a 6-class test list and names in other/) and a second copy of the
    lists in d2/ with the label list `tsn prepare` writes beside its lists."""
    root = tmp_path_factory.mktemp("runlists")
    data = make_tiny_data(root / "d")
    d2 = root / "d2"
    d2.mkdir()
    for name in ("train.txt", "val.txt"):  # absolute video paths: the copies list the same videos
        shutil.copy(data[name[:-4]], d2 / name)
    (d2 / "ucf101_label_list.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(NAMES)))
    other = root / "other"
    other.mkdir()
    videos = [ln.split()[0] for ln in Path(data["val"]).read_text().splitlines()]
    (other / "test.txt").write_text("".join(f"{videos[i]} {i}\n" for i in range(6)))  # labels 0..5: 6 classes
    (other / "ucf101_label_list.txt").write_text("".join(f"{i} six_{i}\n" for i in range(6)))
    cfg = write_tiny_config(root / "c.yaml", data, root / "out", epochs=1, val=True)
    doc = yaml.safe_load(cfg.read_text())
    doc["data"].update(test_list=str(other / "test.txt"), label_names=str(other / "ucf101_label_list.txt"))
    cfg.write_text(yaml.safe_dump(doc))
    return {"root": root, "data": data, "d2": d2, "other": other, "cfg": cfg}


@pytest.fixture(scope="module")
def given_run(ds):
    """`tsn train --config c.yaml --train-list d2/train.txt --val-list d2/val.txt` (lists of another folder)."""
    proc = run_train("--config", ds["cfg"], "--train-list", ds["d2"] / "train.txt", "--val-list", ds["d2"] / "val.txt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ds["root"] / "out", proc


# ------------------------------------------------------------------------------------ item 7: lists and names


def test_saved_config_holds_the_lists_the_run_used(ds, given_run):
    out, proc = given_run
    saved = yaml.safe_load((out / "config.yaml").read_text())["data"]
    assert saved["val_list"] == str(ds["d2"] / "val.txt")
    assert saved["test_list"] == str(ds["d2"] / "val.txt")  # not the config file's 6-class other/test.txt
    assert saved["label_names"] == str(ds["d2"] / "ucf101_label_list.txt")  # beside the given lists
    text = _flat(proc)
    assert f"data.test_list: {ds['d2'] / 'val.txt'}, the run's val list" in text
    assert f"class names from {ds['d2'] / 'ucf101_label_list.txt'} (beside the given lists)" in text
    assert (out / "label_names.txt").read_text().split() == ["0", "alpha", "1", "beta", "2", "gamma"]


def test_eval_defaults_to_the_runs_val_list_and_names_it(ds, given_run):
    out, _ = given_run
    p = run_tsn("eval", "--weights", out / "TSN_best.pdparams", "--json", "--workers", "0", cwd=ds["root"])
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["list"] == str(ds["d2"] / "val.txt") and doc["num_videos"] == 6
    assert [c["label"] for c in doc["per_class"]] == NAMES
    t = run_tsn("eval", "--weights", out / "TSN_best.pdparams", "--workers", "0", cwd=ds["root"])
    assert t.returncode == 0, t.stderr
    assert "Evaluation of d2/val.txt" in t.stdout  # shown relative to the working folder


def test_eval_label_outside_the_models_classes_is_an_error_naming_the_line(ds, given_run):
    out, _ = given_run
    p = run_tsn("eval", "--weights", out / "TSN_best.pdparams", "--list", ds["other"] / "test.txt", "--workers", "0",
                "--json", cwd=ds["root"])
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stdout == "" and "Traceback" not in p.stderr
    assert f"{ds['other'] / 'test.txt'}:4: label 3 >= num_classes 3 of the model (and 2 more line(s))" in _flat(p)


def test_eval_with_no_readable_video_scores_nothing_and_says_so(ds, given_run, tmp_path):
    out, _ = given_run
    bad = [corrupt_video(tmp_path / "a.avi"), tmp_path / "gone.avi"]
    lst = tmp_path / "bad.txt"
    lst.write_text(f"{bad[0]} 0\n{bad[1]} 1\n")
    p = run_tsn("eval", "--weights", out / "TSN_best.pdparams", "--list", lst, "--workers", "0",
                "--output", tmp_path / "rep", cwd=ds["root"])
    assert p.returncode == 2, p.stdout + p.stderr
    text = _flat(p)
    assert f"no video could be read from {lst}: nothing was scored" in text
    assert "Unreadable videos" in text and "a.avi" in text and "gone.avi" in text  # the table stays
    assert "top-1" not in text and not (tmp_path / "rep").exists()
    j = run_tsn("eval", "--weights", out / "TSN_best.pdparams", "--list", lst, "--workers", "0", "--json",
                cwd=ds["root"])
    assert j.returncode == 2
    doc = json.loads(j.stdout)
    assert doc["top1"] is None and doc["num_videos"] == 0 and len(doc["unreadable"]) == 2


def test_missing_label_names_use_the_label_list_beside_the_lists_or_warn(ds, tmp_path):
    cfg = write_tiny_config(tmp_path / "c.yaml", {"train": ds["d2"] / "train.txt", "val": None}, tmp_path / "o")
    doc = yaml.safe_load(cfg.read_text())
    doc["data"]["label_names"] = str(tmp_path / "absent_label_list.txt")
    cfg.write_text(yaml.safe_dump(doc))
    p = run_train("--config", cfg, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert f"class names from {ds['d2'] / 'ucf101_label_list.txt'} (beside the lists)" in _flat(p)
    lone = write_tiny_config(tmp_path / "lone.yaml", ds["data"], tmp_path / "o")  # d/: no label list there
    p = run_train("--config", lone, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "warning: no class names (data.label_names is not set): classes are shown as their ids 0..2" in _flat(p)


# ------------------------------------------------------------------------------------ item 8: the schedule


def test_default_boundaries_follow_epochs(ds, tmp_path):
    cfg = write_tiny_config(tmp_path / "c.yaml", ds["data"], tmp_path / "out", epochs=3)
    p = run_train("--config", cfg)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = [json.loads(ln) for ln in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == pytest.approx([0.01, 0.001, 0.0001])  # drops after epochs 1 and 2
    assert "at or past the last epoch" not in _flat(p)


def test_explicit_boundaries_past_the_end_warn(ds, tmp_path):
    def dry(bounds, epochs=2):
        cfg = write_tiny_config(tmp_path / "c.yaml", ds["data"], tmp_path / "out", epochs=epochs, lr_boundaries=bounds)
        p = run_train("--config", cfg, "--dry-run", "--json")
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)["lr_boundaries"], " ".join(p.stderr.split())

    bounds, err = dry([12, 15])
    assert bounds == [12, 15]
    assert ("warning: train.lr_boundaries [12, 15] are at or past the last epoch (2): the LR never drops; "
            "set -o train.lr_boundaries=[0.333,0.667] for fractions of the epochs") in err
    bounds, err = dry([1, 5], epochs=3)
    assert "train.lr_boundaries [1, 5]: 5 is at or past the last epoch (3): the LR drops after epoch 1 only" in err
    bounds, err = dry([0.75, 0.9375], epochs=8)  # fractions scale with the epochs: no warning
    assert bounds == [6, 7] and "at or past" not in err
    p = run_train("--config", tmp_path / "c.yaml", "-o", "train.lr_boundaries=[1.5]", "--dry-run")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "1.5 is neither an epoch (a whole number >= 1) nor a fraction of train.epochs" in _flat(p)


def test_resume_with_another_schedule_warns_once(ds, tmp_path):
    out = tmp_path / "out"
    cfg = write_tiny_config(tmp_path / "c.yaml", ds["data"], out, epochs=1)
    assert run_train("--config", cfg).returncode == 0
    same = run_train("--config", cfg, "--resume", "auto", "--dry-run")
    assert same.returncode == 0 and "schedule differs" not in _flat(same)
    p = run_train("--config", cfg, "--resume", "auto", "--epochs", "3", "--dry-run")
    assert p.returncode == 0, p.stderr
    text = _flat(p)
    assert ("warning: --resume TSN_epoch_00001.pdparams: the schedule differs from the one it was written with "
            "(epochs 1 -> 3; LR drops after epochs [1] -> [1, 2]): epochs 2-3 follow the new schedule") in text
    assert text.count("schedule differs") == 1
    # a checkpoint from before .state.json recorded the schedule: the config.yaml beside it tells
    state = out / "TSN_epoch_00001.state.json"
    meta = json.loads(state.read_text())
    del meta["schedule"]
    state.write_text(json.dumps(meta))
    p = run_train("--config", cfg, "--resume", "auto", "--epochs", "3", "--dry-run")
    assert "(epochs 1 -> 3; LR drops after epochs [1] -> [1, 2])" in _flat(p)


def test_the_demo_config_keeps_its_16_epoch_schedule_and_scales():
    from tsn_cli.config import load_config, with_values
    from tsn_cli.engine.optim import late_boundaries_warning, lr_boundaries

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "tsn_demo.yaml")
    assert cfg.train.epochs == 16 and lr_boundaries(cfg) == [12, 15]  # the quick start's schedule, unchanged
    assert lr_boundaries(with_values(cfg, {"train.epochs": 2})) == [1]
    assert lr_boundaries(with_values(cfg, {"train.epochs": 32})) == [24, 30]
    assert late_boundaries_warning(with_values(cfg, {"train.epochs": 2})) is None

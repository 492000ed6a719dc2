"""dataset.yaml from every prepare command, and `tsn train|eval --data`: what it sets, what wins over it, the
errors for a broken or disagreeing description, and the own-videos chain end to end:
`tsn prepare folder` -> `tsn train --data` -> `tsn eval` on the demo's classes laid out as class folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers_prepare import make_k400_tree, make_ucf_tree

TINY = ["--depth", "18", "--seg-num", "2", "-o", "augment.short_side=40", "-o", "augment.target_size=32",
        "--batch-size", "4", "--workers", "0", "--device", "cpu"]


def _dry(tsn, *args, cwd=None) -> dict:
    proc = tsn("train", *args, *TINY, "--dry-run", "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucfdata") / "ucf"
    make_ucf_tree(root, groups=3, clips=1, frames=4)
    return root


def test_ucf101_and_k400_write_dataset_yaml(tsn, ucf, tmp_path):
    proc = tsn("prepare", "ucf101", ucf, "--json", "-j", "1")
    assert proc.returncode == 1  # the tree's bad entries
    assert json.loads(proc.stdout)["spec"] == str(ucf / "dataset.yaml")
    spec = yaml.safe_load((ucf / "dataset.yaml").read_text())
    assert spec["train_list"] == "ucf101_train_split_1_videos.txt" and spec["label_list"] == "ucf101_label_list.txt"
    assert spec["num_classes"] == 3 and spec["source"] == "ucf101" and spec["format"] == "videos"
    for n in (1, 2, 3):  # several splits: one description each
        assert yaml.safe_load((ucf / f"dataset_split_{n}.yaml").read_text())["val_list"] == \
            f"ucf101_val_split_{n}_videos.txt"
    videos, ann = tmp_path / "k400v", tmp_path / "k400a"
    make_k400_tree(videos, ann, frames=4)
    tsn("prepare", "k400", videos, "-a", ann, "-j", "1")
    spec = yaml.safe_load((videos / "dataset.yaml").read_text())
    assert (spec["train_list"], spec["val_list"], spec["label_list"]) == \
        ("train.list", "val.list", "Kinetics-400_label_list.txt")


def test_train_takes_everything_from_data_and_flags_win(tsn, ucf, tmp_path):
    tsn("prepare", "ucf101", ucf, "-j", "1")
    train_rows = len((ucf / "ucf101_train_split_1_videos.txt").read_text().splitlines())
    val_rows = len((ucf / "ucf101_val_split_1_videos.txt").read_text().splitlines())
    doc = _dry(tsn, "--data", ucf)
    assert (doc["train_videos"], doc["val_videos"]) == (train_rows, val_rows)
    # a folder or its yaml; the other split's description; a --config file's lists lose to --data
    demo_cfg = Path(__file__).parents[1] / "configs/tsn_demo.yaml"
    doc = _dry(tsn, "--data", ucf / "dataset_split_2.yaml", "--config", demo_cfg)
    assert doc["val_videos"] == len((ucf / "ucf101_val_split_2_videos.txt").read_text().splitlines())
    # flags and -o win over --data
    doc = _dry(tsn, "--data", ucf, "--val-list", ucf / "ucf101_val_split_3_videos.txt")
    assert doc["val_videos"] == len((ucf / "ucf101_val_split_3_videos.txt").read_text().splitlines())
    doc = _dry(tsn, "--data", ucf, "-o", f"data.train_list={ucf / 'ucf101_val_split_1_videos.txt'}")
    assert doc["train_videos"] == val_rows


def _spec_copy(ucf: Path, tmp_path: Path, **changes) -> Path:
    spec = yaml.safe_load((ucf / "dataset.yaml").read_text())
    spec.update(changes)
    spec = {k: v for k, v in spec.items() if v != "DROP"}
    for name in ("ucf101_train_split_1_videos.txt", "ucf101_val_split_1_videos.txt", "ucf101_label_list.txt"):
        (tmp_path / name).write_text((ucf / name).read_text().replace("UCF-101", str(ucf / "UCF-101")))
    out = tmp_path / "dataset.yaml"
    out.write_text(yaml.safe_dump(spec))
    return out


@pytest.mark.parametrize("changes, needle", [
    ({"num_classes": 5}, "num_classes is 5 but its label list"),
    ({"classes": 3}, "classes: unknown key"),
    ({"label_list": "DROP"}, "label_list: Field required"),
    ({"train_list": "gone.txt"}, "train_list: file not found"),
    ({"format": "images"}, "format: Input should be 'videos' or 'frames'"),
])
def test_broken_dataset_yaml_is_one_line(tsn, ucf, tmp_path, changes, needle):
    tsn("prepare", "ucf101", ucf, "-j", "1")
    spec = _spec_copy(ucf, tmp_path, **changes)
    proc = tsn("train", "--data", spec, "--dry-run")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and needle in err and str(spec) in err and len(err.splitlines()) == 1, err


def test_class_count_always_from_the_label_list(tsn, ucf, tmp_path):
    tsn("prepare", "ucf101", ucf, "-j", "1")
    for args, needle in ((["--num-classes", "7"], "--num-classes 7: the dataset"),
                         (["-o", "model.num_classes=7"], "-o model.num_classes=7: the dataset")):
        proc = tsn("train", "--data", ucf, *args, "--dry-run")
        assert proc.returncode == 2 and needle in proc.stderr and "has 3 classes" in proc.stderr, proc.stderr
    proc = tsn("train", "--data", tmp_path, "--dry-run")
    assert proc.returncode == 2 and "no dataset.yaml in this folder" in proc.stderr


def test_own_videos_end_to_end(tsn, tmp_path):
    """The README's three commands on the demo's classes laid out as plain class folders (plus bad files)."""
    demo = tmp_path / "demo"
    tsn("prepare", "demo", demo, "--num-classes", "3", "--videos-per-class", "8", "--frames", "8", check=True)
    mine = tmp_path / "my_videos"
    for cls_dir in sorted((demo / "UCF-101").iterdir()):
        shutil.copytree(cls_dir, mine / cls_dir.name)  # my_videos/<Class>/v_<Class>_gXX_cYY.avi
    (mine / "RedDisc" / "corrupt.avi").write_bytes(b"\0" * 100)
    (mine / "RedDisc" / "labels.xlsx").write_bytes(b"PK")
    prep = tsn("prepare", "folder", mine, "--json")
    assert prep.returncode == 1, prep.stderr
    doc = json.loads(prep.stdout)
    assert [b["path"] for b in doc["bad"]] == ["RedDisc/corrupt.avi"] and doc["other_files"] == 1
    assert doc["splits"]["train"]["classes"] == doc["splits"]["val"]["classes"] == 3
    assert (mine / "label_list.txt").read_text().splitlines() == ["0 BlueTriangle", "1 GreenSquare", "2 RedDisc"]

    train = tsn("train", "--data", mine, *TINY, "--epochs", "2", "-o", "train.lr_boundaries=[1]",
                "--output", tmp_path / "out", "--json")
    assert train.returncode == 0, train.stderr
    summary = json.loads(train.stdout)
    assert summary["epochs_done"] == 2
    saved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert saved["model"]["num_classes"] == 3 and saved["data"]["label_names"] == str(mine / "label_list.txt")

    ev = tsn("eval", "--weights", tmp_path / "out" / "TSN_best.pdparams", "--json")
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["list"] == str(mine / "val_videos.txt") and result["num_videos"] == doc["splits"]["val"]["videos"]
    assert [c["label"] for c in result["per_class"]] == ["BlueTriangle", "GreenSquare", "RedDisc"]
    assert result["top1"] == pytest.approx(summary["best_top1"], abs=1e-6)

    # the same weights on a dataset with another class count: an error naming both, not a silent mismatch
    two = tmp_path / "two"
    for name in ("BlueTriangle", "GreenSquare"):
        shutil.copytree(mine / name, two / name)
    tsn("prepare", "folder", two, check=True)
    proc = tsn("eval", "--weights", tmp_path / "out" / "TSN_best.pdparams", "--data", two)
    assert proc.returncode == 2 and "--data" in proc.stderr and "2 classes" in proc.stderr, proc.stderr

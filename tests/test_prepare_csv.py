"""`tsn prepare csv FILE --root DIR`: labels by name or id, given or assigned splits, bad videos reported, and
one-line errors naming FILE:LINE for a malformed CSV."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.helpers_prepare import make_class_tree


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("csvroot") / "videos"
    make_class_tree(r, groups=3, clips=1)
    return r


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_names_and_given_splits(tsn, root, tmp_path):
    csv_file = _write(tmp_path / "labels.csv", "Path,Label,Split\n"
                      "cat/v_cat_g01_c01.avi,cat,train\n"
                      "dog/v_dog_g01_c01.avi,dog,train\n"
                      "bird/bikes_real.mp4,bird,train\n"
                      "\n"
                      "cat/v_cat_g02_c01.avi,cat,val\n"
                      "dog/v_dog_g02_c01.avi,dog,VAL\n"
                      "bird/v_bird_g01_c01.avi,bird,test\n"
                      "dog/broken_empty.mp4,dog,train\n"
                      "cat/not_there.mp4,cat,val\n")
    out = tmp_path / "lists"
    proc = tsn("prepare", "csv", csv_file, "--root", root, "--out", out, "--json", "-j", "1")
    assert proc.returncode == 1, proc.stderr  # bad and missing videos: listed, left out
    doc = json.loads(proc.stdout)
    assert {b["path"] for b in doc["bad"]} == {"dog/broken_empty.mp4", "cat/not_there.mp4"}
    assert _lines(out / "label_list.txt") == ["0 bird", "1 cat", "2 dog"]
    rel = Path(os.path.relpath(root, out)).as_posix()  # paths relative to the list's folder
    assert _lines(out / "train_videos.txt") == [f"{rel}/bird/bikes_real.mp4 0", f"{rel}/cat/v_cat_g01_c01.avi 1",
                                                f"{rel}/dog/v_dog_g01_c01.avi 2"]
    assert _lines(out / "val_videos.txt") == [f"{rel}/cat/v_cat_g02_c01.avi 1", f"{rel}/dog/v_dog_g02_c01.avi 2"]
    assert _lines(out / "test_videos.txt") == [f"{rel}/bird/v_bird_g01_c01.avi 0"]
    spec = yaml.safe_load((out / "dataset.yaml").read_text())
    assert spec["source"] == "csv" and spec["test_list"] == "test_videos.txt" and spec["num_classes"] == 3


def test_ids_and_assigned_splits(tsn, root, tmp_path):
    rows = [f"{c}/v_{c}_g{g:02d}_c01.avi,{i}" for i, c in enumerate(("cat", "dog")) for g in (1, 2, 3)]
    csv_file = _write(tmp_path / "ids.csv", "label,path\n" + "\n".join(r.split(",")[1] + "," + r.split(",")[0]
                                                                       for r in rows) + "\n")
    proc = tsn("prepare", "csv", csv_file, "--root", root, "--out", tmp_path, "--seed", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    assert _lines(tmp_path / "label_list.txt") == ["0 0", "1 1"]  # ids name themselves
    train, val = _lines(tmp_path / "train_videos.txt"), _lines(tmp_path / "val_videos.txt")
    assert len(train) + len(val) == 6
    for label in ("0", "1"):  # stratified: each class in both
        assert any(r.endswith(" " + label) for r in train) and any(r.endswith(" " + label) for r in val)


@pytest.mark.parametrize("text, needle", [
    ("path,label,camera\na.mp4,cat,1\n", "labels.csv:1: unknown column 'camera'"),
    ("path,split\na.mp4,train\n", "labels.csv:1: missing column 'label'"),
    ("path,label,label\na.mp4,cat,cat\n", "labels.csv:1: column 'label' appears twice"),
    ("path,label\ncat/v_cat_g01_c01.avi,cat\ndog/v_dog_g01_c01.avi,dog\ncat/v_cat_g01_c01.avi,cat\n",
     "labels.csv:4: cat/v_cat_g01_c01.avi is listed twice (also line 2)"),
    ("path,label\ncat/v_cat_g01_c01.avi,cat\ndog/v_dog_g01_c01.avi,1\n",
     "labels.csv:3: label '1' is an id but line 2 has a name ('cat')"),
    ("path,label\ncat/v_cat_g01_c01.avi,0\ndog/v_dog_g01_c01.avi,dog\n",
     "labels.csv:3: label 'dog' is a name but line 2 has an id ('0')"),
    ("path,label,split\ncat/v_cat_g01_c01.avi,cat,dev\n", "labels.csv:2: split 'dev' must be train, val or test"),
    ("path,label\ncat/v_cat_g01_c01.avi,cat,extra\n", "labels.csv:2: 3 fields, the header has 2"),
    ("path,label\ncat/v_cat_g01_c01.avi,\n", "labels.csv:2: empty label"),
    ("path,label\n../outside.mp4,cat\n", "labels.csv:2: path '../outside.mp4' is not inside --root"),
    ("path,label\n", "no rows after the header"),
])
def test_malformed_csv_is_one_line_naming_the_line(tsn, root, tmp_path, text, needle):
    csv_file = _write(tmp_path / "labels.csv", text)
    proc = tsn("prepare", "csv", csv_file, "--root", root, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out" / "train_videos.txt").exists()

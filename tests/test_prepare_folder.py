"""`tsn prepare folder`: lists, bad-video report and the split's properties (stratified, group-aware,
deterministic, stable when videos are added), through the real CLI on real decodable videos."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers_prepare import make_class_tree, write_video

GROUP = re.compile(r"_g(\d+)_")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder") / "clips"
    info = make_class_tree(root)
    return root, info


def _prepare(tsn, root: Path, *args, expect: int | None = None) -> dict:
    proc = tsn("prepare", "folder", root, "--json", "-j", "1", *args)
    if expect is not None:
        assert proc.returncode == expect, proc.stderr
    return json.loads(proc.stdout)


def _subsets(out: Path) -> dict[str, str]:
    """video rel path -> subset, from the written video lists."""
    where = {}
    for subset in ("train", "val", "test"):
        f = out / f"{subset}_videos.txt"
        if f.is_file():
            for line in f.read_text().splitlines():
                path, _ = line.rsplit(" ", 1)
                assert path not in where, f"{path} in {where[path]} and {subset}"
                where[path] = subset
    return where


def _copy(tree, dst: Path) -> Path:
    shutil.copytree(tree[0], dst, ignore=shutil.ignore_patterns("*_videos.txt", "label_list.txt", "dataset.yaml"))
    return dst


def test_lists_labels_report_and_dataset_yaml(tsn, tree, tmp_path):
    root = _copy(tree, tmp_path / "clips")
    info = tree[1]
    doc = _prepare(tsn, root, "--verify", expect=1)  # bad videos are listed and left out: exit 1
    assert {b["path"] for b in doc["bad"]} == set(info["bad"])
    assert doc["other_files"] == 1 and any("not a video" in w for w in doc["warnings"])
    assert doc["num_classes"] == 3 and doc["videos"] == len(info["good"]) + len(info["bad"])
    assert (root / "label_list.txt").read_text().splitlines() == ["0 bird", "1 cat", "2 dog"]  # sorted names
    where = _subsets(root)
    assert sorted(where) == info["good"]  # every usable video exactly once, no bad one
    assert "bird/bikes_real.mp4" in where  # the real H.264 clip
    labels = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1])
              for s in ("train", "val") for line in (root / f"{s}_videos.txt").read_text().splitlines()}
    assert all(labels[p] == ["bird", "cat", "dog"].index(p.split("/")[0]) for p in labels)
    assert not (root / "test_videos.txt").exists()  # --test 0: no test list
    spec = yaml.safe_load((root / "dataset.yaml").read_text())
    assert spec == {"version": 1, "source": "folder", "format": "videos", "train_list": "train_videos.txt",
                    "val_list": "val_videos.txt", "test_list": None, "label_list": "label_list.txt",
                    "num_classes": 3, "frame_template": "img_{:05}.jpg"}
    assert doc["spec"] == str(root / "dataset.yaml")


def test_split_is_stratified_and_group_aware(tsn, tree, tmp_path):
    root = _copy(tree, tmp_path / "clips")
    _prepare(tsn, root, "--val", "0.3", "--test", "0.2", "--seed", "3", "--verify")
    where = _subsets(root)
    for cls in ("bird", "cat", "dog"):
        subsets = {s for p, s in where.items() if p.startswith(cls + "/")}
        assert {"train", "val"} <= subsets, (cls, subsets)
        by_group: dict[str, set] = {}
        for p, s in where.items():
            m = GROUP.search(p)
            if p.startswith(cls + "/") and m:
                by_group.setdefault(m.group(1), set()).add(s)
        assert len(by_group) == 5 and all(len(s) == 1 for s in by_group.values()), by_group  # a group never splits


def test_split_is_deterministic_for_a_seed(tsn, tree, tmp_path):
    a, b, c = (_copy(tree, tmp_path / n) for n in "abc")
    for root, seed in ((a, "7"), (b, "7"), (c, "8")):
        _prepare(tsn, root, "--seed", seed)
    assert (a / "train_videos.txt").read_text() == (b / "train_videos.txt").read_text()
    assert (a / "val_videos.txt").read_text() == (b / "val_videos.txt").read_text()
    assert _subsets(a) != _subsets(c)  # another seed, another split


def test_adding_videos_never_moves_existing_ones(tsn, tree, tmp_path):
    root = _copy(tree, tmp_path / "clips")
    first = _prepare(tsn, root)
    assert not [w for w in first["warnings"] if "moved" in w]  # the hash alone split every class
    before = _subsets(root)
    write_video(root / "cat" / "v_cat_g09_c01.avi", frames=6, seed=901)  # a new group
    write_video(root / "dog" / "v_dog_g02_c07.avi", frames=6, seed=902)  # a new clip of an existing group
    write_video(root / "bird" / "solo_take.avi", frames=6, seed=903)  # no group key: its own group
    _prepare(tsn, root)
    after = _subsets(root)
    assert {p: after[p] for p in before} == before
    assert after["dog/v_dog_g02_c07.avi"] == before["dog/v_dog_g02_c01.avi"]  # joins its group's split
    assert set(after) - set(before) == {"cat/v_cat_g09_c01.avi", "dog/v_dog_g02_c07.avi", "bird/solo_take.avi"}


def test_small_classes_train_and_val_guaranteed_else_warned(tsn, tmp_path):
    root = tmp_path / "small"
    for g in (1, 2):  # two groups: must be in train and val whatever the hash says
        write_video(root / "pair" / f"v_pair_g{g:02d}_c01.avi", frames=4, seed=g)
    for k in (1, 2):  # one group of two clips: cannot be in both; a warning names it
        write_video(root / "solo" / f"v_solo_g01_c{k:02d}.avi", frames=4, seed=10 + k)
    for seed in range(6):
        doc = _prepare(tsn, root, "--seed", str(seed), "--val", "0.2", expect=0)
        where = _subsets(root)
        assert {s for p, s in where.items() if p.startswith("pair/")} == {"train", "val"}, seed
        assert len({s for p, s in where.items() if p.startswith("solo/")}) == 1
        assert any(w.startswith("class solo: one group (2 clips)") for w in doc["warnings"]), doc["warnings"]


def test_group_regex_option(tsn, tmp_path):
    root = tmp_path / "people"
    for cls in ("wave", "clap"):
        for person in ("ann", "bob", "cyd", "dan", "eve"):
            for take in (1, 2, 3):
                write_video(root / cls / f"{person}_take{take}.avi", frames=4, seed=take)
    _prepare(tsn, root, "--group", r"^([a-z]+)_", "--val", "0.4", expect=0)
    where = _subsets(root)
    for cls in ("wave", "clap"):
        for person in ("ann", "bob", "cyd", "dan", "eve"):
            assert len({s for p, s in where.items() if p.startswith(f"{cls}/{person}_")}) == 1, (cls, person)


def test_frames_layout_and_dataset_yaml_frames(tsn, tmp_path):
    root = tmp_path / "fr"
    for cls in ("a", "b"):
        for g in (1, 2):
            write_video(root / cls / f"v_{cls}_g{g:02d}_c01.avi", frames=5, seed=g)
    write_video(root / "a" / "v_a_g01_c01.mp4", frames=5, seed=9, fourcc="mp4v")  # same stem, other extension
    doc = _prepare(tsn, root, "--frames", expect=0)
    assert doc["extraction"]["extracted"] == 5
    assert (root / "rawframes" / "a" / "v_a_g01_c01.avi" / "img_00005.jpg").is_file()
    assert (root / "rawframes" / "a" / "v_a_g01_c01.mp4" / "img_00001.jpg").is_file()
    assert (root / "rawframes" / "b" / "v_b_g02_c01" / "img_00005.jpg").is_file()
    spec = yaml.safe_load((root / "dataset.yaml").read_text())
    assert spec["format"] == "frames" and spec["train_list"] == "train_rawframes.txt"
    # rawframes/ is not taken for a class on the next run
    again = _prepare(tsn, root, "--frames", expect=0)
    assert again["num_classes"] == 2 and again["extraction"]["extracted"] == 0


@pytest.mark.parametrize("args, needle", [
    (["--val", "0.7", "--test", "0.4"], "--val 0.7 --test 0.4: each must be in [0, 1)"),
    (["--group", "(unclosed"], "--group '(unclosed': not a regular expression"),
    (["--shard", "1/2"], "--shard shares out frame extraction: add --frames"),
])
def test_bad_options_are_one_line(tsn, tree, tmp_path, args, needle):
    root = _copy(tree, tmp_path / "clips")
    proc = tsn("prepare", "folder", root, *args)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (root / "train_videos.txt").exists()


def test_empty_folder_is_an_error(tsn, tmp_path):
    (tmp_path / "nothing" / "docs").mkdir(parents=True)
    (tmp_path / "nothing" / "docs" / "readme.md").write_text("x")
    proc = tsn("prepare", "folder", tmp_path / "nothing")
    assert proc.returncode == 2 and "no class folders with videos" in proc.stderr

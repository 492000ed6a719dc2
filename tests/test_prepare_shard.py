"""`--shard I/N`: N processes extract disjoint parts of one dataset into one folder at the same time; the same
command without --shard then writes the lists and extracts nothing that is complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers_prepare import make_class_tree, make_ucf_tree


def _start(*args) -> subprocess.Popen:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.Popen([sys.executable, "-m", "tsn_cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _frame_dirs(frames: Path) -> set[str]:
    return {p.parent.relative_to(frames).as_posix() for p in frames.rglob("img_00001.jpg")}


def test_two_shards_at_once_then_lists_without_extracting(tsn, tmp_path):
    root = tmp_path / "clips"
    info = make_class_tree(root, groups=4, clips=2, frames=5, bikes=False)
    good = {p.rsplit(".", 1)[0] for p in info["good"]}
    cmd = ("prepare", "folder", root, "--frames", "--short-side", "32", "-j", "1", "--json")
    procs = [_start(*cmd, "--shard", f"{i}/2") for i in (1, 2)]  # both running at once
    docs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 1, err  # the bad videos of the shard are reported
        docs.append(json.loads(out))
    assert [d["shard"] for d in docs] == ["1/2", "2/2"]
    assert all(d["lists"] == [] and d["spec"] is None for d in docs)  # no lists in shard mode
    assert not (root / "train_videos.txt").exists() and not (root / "dataset.yaml").exists()
    done = [d["extraction"]["extracted"] for d in docs]
    assert all(n > 0 for n in done) and sum(done) == len(good)  # disjoint, nothing done twice, nothing left
    bad = [{b["path"] for b in d["bad"]} for d in docs]
    assert not bad[0] & bad[1] and bad[0] | bad[1] == set(info["bad"])
    assert _frame_dirs(root / "rawframes") == good
    assert not [p for p in (root / "rawframes").rglob("*") if ".tmp-" in p.name]  # no temporary folder left

    plain = tsn("prepare", "folder", root, "--frames", "--short-side", "32", "-j", "1", "--json")
    assert plain.returncode == 1, plain.stderr
    doc = json.loads(plain.stdout)
    assert doc["shard"] is None
    assert doc["extraction"]["extracted"] == 0 and doc["extraction"]["existing"] == len(good)
    rows = [r for s in ("train", "val") for r in (root / f"{s}_rawframes.txt").read_text().splitlines()]
    assert len(rows) == len(good) and all(r.split()[1] == "5" for r in rows)
    assert yaml.safe_load((root / "dataset.yaml").read_text())["format"] == "frames"


def test_ucf101_shards_cover_the_dataset(tsn, tmp_path):
    root = tmp_path / "ucf"
    make_ucf_tree(root, groups=2, clips=2, frames=4)
    common = ("prepare", "ucf101", root, "--split", "1", "--frames", "-j", "1", "--json")
    docs = [json.loads(tsn(*common, "--shard", f"{i}/3").stdout) for i in (1, 2, 3)]
    assert all(not (root / f).exists() for f in ("ucf101_train_split_1_rawframes.txt", "dataset.yaml"))
    plain = json.loads(tsn(*common).stdout)
    assert plain["extraction"]["extracted"] == 0
    assert plain["extraction"]["existing"] == sum(d["extraction"]["extracted"] for d in docs) == plain["ok"]
    assert yaml.safe_load((root / "dataset.yaml").read_text())["train_list"] == "ucf101_train_split_1_rawframes.txt"


def test_bad_shard_values(tsn, tmp_path):
    root = tmp_path / "ucf"
    make_ucf_tree(root, groups=1, clips=1, frames=4)
    for value, needle in (("3/2", "I must be 1..N"), ("0/2", "I must be 1..N"), ("1-2", "expected I/N")):
        proc = tsn("prepare", "ucf101", root, "--frames", "--shard", value)
        assert proc.returncode == 2 and f"--shard {value}: {needle}" in proc.stderr, proc.stderr

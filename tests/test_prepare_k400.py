"""`prepare k400`: lists from the official CSVs in both video layouts, missing/bad videos, frames."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers_prepare import make_k400_tree
from tsn_cli.errors import DataError
from tsn_cli.prepare.frames import count_frames_on_disk
from tsn_cli.prepare.k400 import find_csvs, prepare_k400
from tsn_cli.prepare.runner import PrepareOptions


def _lines(p: Path) -> list[str]:
    return p.read_text().splitlines()


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_lists_exact(tmp_path, layout):
    videos, ann = tmp_path / "videos", tmp_path / "ann"
    info = make_k400_tree(videos, ann, layout=layout)
    out = tmp_path / "k400"
    rep = prepare_k400(videos, ann, opts=PrepareOptions(out=out, workers=1, verify=True))
    assert _lines(out / "Kinetics-400_label_list.txt") == ["0 abseiling", "1 air_drumming", "2 zumba"]
    for subset in ("train", "val"):
        got = _lines(out / f"{subset}.list")
        want = []
        for stem, ci in info["good"][subset].items():
            label = ["abseiling", "air_drumming", "zumba"][ci]
            rel = f"{subset}/{label}/{stem}.mp4" if layout == "nested" else f"{stem}.mp4"
            want.append(f"../videos/{rel} {ci}")
        assert got == want, subset
    reasons = {b.path.rsplit("/", 1)[-1].removesuffix(".mp4"): b.reason for b in rep.bad}
    assert set(reasons) == set(info["bad"])
    for stem, kind in info["bad"].items():
        assert kind in reasons[stem], (stem, reasons[stem])
    assert rep.exit_code == 1 and rep.num_classes == 3
    assert any("missing" in w for w in rep.warnings) and any("400" in w for w in rep.warnings)
    assert not (out / "train_frames.list").exists()


def test_frames_and_resume(tmp_path):
    videos, ann = tmp_path / "videos", tmp_path / "ann"
    info = make_k400_tree(videos, ann, layout="nested", frames=7)
    rep = prepare_k400(videos, ann, opts=PrepareOptions(frames=True, workers=2))  # lists and rawframes/ go into ROOT
    assert rep.extraction["missing"] == 1 and rep.extraction["extracted"] == 15
    lines = _lines(videos / "val_frames.list")
    assert len(lines) == len(info["good"]["val"]) == 6
    for ln in lines + _lines(videos / "train_frames.list"):
        d, n, label = ln.split()
        assert d.startswith("rawframes/") and int(n) == 7 == count_frames_on_disk(videos / d)
        assert not d.endswith(".mp4")  # folder is the video stem
    assert "rawframes/air_drumming/" in "\n".join(lines)
    # the rawframes folder under ROOT is not mistaken for videos on the next run; nothing re-extracted
    rep2 = prepare_k400(videos, ann, opts=PrepareOptions(frames=True, workers=1))
    assert rep2.extraction["extracted"] == 0 and rep2.extraction["existing"] == 15
    assert _lines(videos / "val_frames.list") == lines


def test_csv_names_and_errors(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "kinetics_train.csv").write_text("label,youtube_id,time_start,time_end,split\n")
    (ann / "kinetics-400_val.csv").write_text("x")
    found = find_csvs(ann)
    assert found["train"].name == "kinetics_train.csv" and found["val"].name == "kinetics-400_val.csv"
    (tmp_path / "v").mkdir()
    with pytest.raises(DataError, match="header"):
        prepare_k400(tmp_path / "v", ann)
    with pytest.raises(DataError, match="annotation folder not found"):
        prepare_k400(tmp_path / "v", tmp_path / "none")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="train.csv"):
        prepare_k400(tmp_path / "v", empty)


def test_absolute_paths(tmp_path):
    videos, ann = tmp_path / "videos", tmp_path / "ann"
    make_k400_tree(videos, ann, layout="flat")
    prepare_k400(videos, ann, opts=PrepareOptions(out=tmp_path / "o", absolute=True, workers=1))
    for ln in _lines(tmp_path / "o" / "train.list"):
        p = ln.rsplit(" ", 1)[0]
        assert os.path.isabs(p)

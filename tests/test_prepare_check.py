"""`prepare check`: the extraction checks on any list file (ours or PaddleVideo's), --write-clean, --json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers_prepare import make_ucf_tree
from tsn_cli.cli.prepare import prepare_app
from tsn_cli.errors import DataError
from tsn_cli.prepare.check import check_list, detect_format
from tsn_cli.prepare.runner import PrepareOptions
from tsn_cli.prepare.ucf101 import prepare_ucf101


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucfc")
    info = make_ucf_tree(root, groups=2, clips=2, frames=8)
    prepare_ucf101(root, opts=PrepareOptions(frames=True, workers=1))
    return root, info


def test_our_lists_pass(prepared):
    root, _ = prepared
    for name in ("ucf101_train_split_1_videos.txt", "ucf101_train_split_1_rawframes.txt"):
        rep = check_list(root / name, workers=1)
        assert rep.exit_code == 0 and rep.ok == rep.entries == 6 and rep.frames == 6 * 8
    assert detect_format(root / "ucf101_val_split_1_rawframes.txt") == "frames"
    assert detect_format(root / "ucf101_val_split_1_videos.txt") == "video"


def test_paddlevideo_style_video_list(prepared, tmp_path):
    """Absolute, extension-less paths (PaddleVideo's build_ucf101_file_list.py) incl. the bad videos."""
    root, info = prepared
    lines = [f"{root / 'UCF-101' / rel[:-4]} {ci}" for rel, (ci, g) in info["names"].items() if g == 1]
    lst = tmp_path / "ucf101_val_split_1_videos.txt"
    lst.write_text("\r\n".join(lines) + "\r\n")
    clean = tmp_path / "clean.txt"
    rep = check_list(lst, workers=2, write_clean=clean)
    assert rep.fmt == "video" and rep.entries == len(lines) == 10
    reasons = {Path(b.path).name: b.reason for b in rep.bad}
    # existing extension-less entries resolve to .avi; the missing one keeps its listed name
    assert set(reasons) == {"v_Beta_g01_c03.avi", "v_Beta_g01_c04.avi", "v_Beta_g01_c05.avi", "v_Beta_g01_c06"}
    assert "truncated" in reasons["v_Beta_g01_c04.avi"] and "empty" in reasons["v_Beta_g01_c03.avi"]
    assert "missing" in reasons["v_Beta_g01_c06"]
    kept = clean.read_text().splitlines()
    assert len(kept) == rep.clean_rows == 6 and all("g01_c0" in k and "Beta_g01_c03" not in k for k in kept)
    assert check_list(clean, workers=1).exit_code == 0
    # --quick does not decode everything: truncation is not detected, the rest is
    quick = check_list(lst, workers=1, full=False)
    assert {Path(b.path).name for b in quick.bad} == set(reasons) - {"v_Beta_g01_c04.avi"}


def test_frames_list_problems(prepared, tmp_path):
    root, _ = prepared
    work = tmp_path / "frames"
    shutil.copytree(root / "rawframes", work / "rawframes")
    src = (root / "ucf101_train_split_1_rawframes.txt").read_text().splitlines()
    lines = list(src[:5])
    d0, d1, d2, d3 = (work / ln.split()[0] for ln in lines[:4])
    lines[0] = lines[0].replace(" 8 ", " 9 ")  # count disagrees with disk
    (d1 / "img_00004.jpg").unlink()  # gap
    (d2 / "img_00008.jpg").write_bytes((d2 / "img_00008.jpg").read_bytes()[:100])  # truncated JPEG
    shutil.rmtree(d3)  # missing folder
    lines += ["rawframes/nothing/here 8 0", "a broken line", "rawframes/x 8 notanint"]
    lst = work / "list.txt"
    lst.write_text("\n".join(lines) + "\n")
    rep = check_list(lst, workers=1)
    reasons = sorted(b.reason for b in rep.bad)
    assert rep.fmt == "frames" and rep.ok == 1 and rep.exit_code == 1
    assert any("list says 9 frames, 8 on disk" in r for r in reasons)
    assert any("gap" in r for r in reasons)
    assert any("img_00008.jpg is truncated" in r for r in reasons)
    assert sum(r == "missing" for r in reasons) == 2
    assert len(rep.bad_lines) == 2 and all(b.where.startswith("list.txt:") for b in rep.bad_lines)


def test_cli_json_and_errors(prepared, tmp_path):
    root, _ = prepared
    runner = CliRunner()
    res = runner.invoke(prepare_app, ["check", str(root / "ucf101_val_split_1_rawframes.txt"), "--json", "-j", "1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ok"] == doc["entries"] == 6 and doc["exit_code"] == 0
    res = runner.invoke(prepare_app, ["check", str(tmp_path / "none.txt")])
    assert isinstance(res.exception, DataError)
    res = runner.invoke(prepare_app, ["check", "--help"])
    assert res.exit_code == 0 and "--write-clean" in res.stdout and "Examples" in res.stdout


def test_check_reports_bad_videos_via_cli(prepared, tmp_path):
    root, _ = prepared
    lst = tmp_path / "l.txt"
    good = root / "UCF-101" / "Alpha" / "v_Alpha_g01_c01.avi"
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"")
    lst.write_text(f"{good} 0\n{bad} 1\n")
    res = CliRunner().invoke(prepare_app, ["check", str(lst), "-j", "1"], env={"COLUMNS": "200"})
    assert res.exit_code == 1
    assert "empty file (0 bytes)" in res.stdout and "bad.avi" in res.stdout

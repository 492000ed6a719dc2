"""List files: PaddleVideo formats, path resolution, messy input, per-line errors and label files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tsn_cli.data.lists import read_label_names, read_list, write_list
from tsn_cli.errors import DataError


def _write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def test_video_list_relative_to_list_folder_with_suffix(tmp_path):
    lst = _write(tmp_path / "lists" / "train.txt", "Archery/v_Archery_g01_c01 5\nBowling/v_b 0\n")
    r = read_list(lst, "video", video_suffix=".avi")
    assert [x.path for x in r.records] == [
        str(tmp_path / "lists" / "Archery" / "v_Archery_g01_c01.avi"),
        str(tmp_path / "lists" / "Bowling" / "v_b.avi"),
    ]
    assert [x.label for x in r.records] == [5, 0]
    assert [x.line for x in r.records] == [1, 2]
    assert all(x.num_frames is None for x in r.records)
    assert r.records[0].list_file == str(lst)
    assert r.bad_lines == []


def test_data_root_and_absolute_paths(tmp_path):
    lst = _write(tmp_path / "l.txt", f"a/x.mp4 1\n{tmp_path}/abs/y.mp4 2\n")
    r = read_list(lst, "video", data_root=tmp_path / "root")
    assert r.records[0].path == str(tmp_path / "root" / "a" / "x.mp4")
    assert r.records[1].path == str(tmp_path / "abs" / "y.mp4")


def test_cwd_fallback_like_paddlevideo(tmp_path, monkeypatch):
    # The files exist relative to the CWD, not to the list's folder -> CWD is used (PaddleVideo behaviour).
    (tmp_path / "work" / "data" / "v").mkdir(parents=True)
    (tmp_path / "work" / "data" / "v" / "a.avi").write_bytes(b"x")
    lst = _write(tmp_path / "lists" / "l.txt", "data/v/a 0\n")
    monkeypatch.chdir(tmp_path / "work")
    r = read_list(lst, "video", video_suffix=".avi")
    assert r.records[0].path == str(tmp_path / "work" / "data" / "v" / "a.avi")


def test_frames_list_crlf_blank_lines_bom_comments_and_spaces(tmp_path):
    text = "\ufeff# comment\nk400/abseiling/my clip 01.mp4 300 0\n\n   \nrel/dir2  12   3  \n"
    lst = _write(tmp_path / "f.txt", text, newline="\r\n")
    r = read_list(lst, "frames", data_root=tmp_path)
    assert [(x.path, x.num_frames, x.label, x.line) for x in r.records] == [
        (str(tmp_path / "k400/abseiling/my clip 01.mp4"), 300, 0, 2),
        (str(tmp_path / "rel/dir2"), 12, 3, 5),
    ]
    assert r.bad_lines == []


def test_video_path_with_spaces(tmp_path):
    lst = _write(tmp_path / "v.txt", "my videos/clip one.avi 7\n")
    r = read_list(lst, "video", data_root="/data")
    assert r.records[0].path == "/data/my videos/clip one.avi"
    assert r.records[0].label == 7


def test_bad_lines_are_reported_with_file_and_line(tmp_path):
    lst = _write(
        tmp_path / "bad.txt",
        "good.avi 1\nonlyonefield\nx.avi abc\ny.avi -1\nz.avi 400\nw.avi 399\n",
    )
    r = read_list(lst, "video", num_classes=400)
    assert [x.label for x in r.records] == [1, 399]
    assert r.bad_lines == [
        f"{lst}:2: expected 'path label', got 1 field",
        f"{lst}:3: label 'abc' is not an integer",
        f"{lst}:4: label -1 is negative",
        f"{lst}:5: label 400 >= num_classes 400",
    ]


def test_frames_bad_counts(tmp_path):
    lst = _write(tmp_path / "f.txt", "a 10 1\nb x 1\nc 0 1\nd 5\n")
    r = read_list(lst, "frames", num_classes=3)
    assert [x.path.endswith("a") for x in r.records] == [True]
    assert r.bad_lines == [
        f"{lst}:2: num_frames 'x' is not an integer",
        f"{lst}:3: num_frames is 0, the folder has no frames",
        f"{lst}:4: expected 'frame_dir num_frames label', got 2 fields",
    ]


def test_wholly_bad_empty_missing_lists_raise(tmp_path):
    bad = _write(tmp_path / "bad.txt", "a b c\nnolabel\n")
    with pytest.raises(DataError, match=r"bad\.txt: no usable line \(2 bad; first: .*bad\.txt:1: label 'c'"):
        read_list(bad, "video")
    empty = _write(tmp_path / "empty.txt", "\n\n  \n")
    with pytest.raises(DataError, match="list is empty"):
        read_list(empty, "video")
    with pytest.raises(DataError, match="list file not found"):
        read_list(tmp_path / "nope.txt", "video")
    with pytest.raises(DataError, match="is a folder"):
        read_list(tmp_path, "video")
    over = _write(tmp_path / "over.txt", "a 5\nb 6\n")
    with pytest.raises(DataError, match="no usable line"):
        read_list(over, "video", num_classes=5)


def test_frames_list_read_as_video_list_is_explained(tmp_path):
    lst = _write(tmp_path / "f.txt", "a 300 0\nb 250 1\n")
    with pytest.raises(DataError, match="frames list"):
        read_list(lst, "video")


def test_control_characters_never_reach_messages(tmp_path):
    lst = _write(tmp_path / "ctl.txt", "ok.avi 0\nevil\x1b[31m.avi \x1b[2Jlabel\n")
    r = read_list(lst, "video")
    assert len(r.bad_lines) == 1
    assert "\x1b" not in r.bad_lines[0]
    assert "?[2Jlabel" in r.bad_lines[0]


def test_non_utf8_names_survive_and_print_escaped(tmp_path):
    lst = tmp_path / "latin1.txt"
    lst.write_bytes(b"caf\xe9.avi 0\nbad.avi x\xff\n")
    r = read_list(lst, "video", data_root=tmp_path)
    # The path keeps the original bytes for os calls.
    assert os.fsencode(r.records[0].path).endswith(b"caf\xe9.avi")
    assert "\\udcff" in r.bad_lines[0] or "\\xff" in r.bad_lines[0]
    r.bad_lines[0].encode("utf-8")  # printable


def test_label_names_formats(tmp_path):
    k400 = _write(tmp_path / "k.txt", "0 abseiling\n1 air drumming\r\n2 answering questions\n")
    assert read_label_names(k400) == ["abseiling", "air drumming", "answering questions"]
    ucf = _write(tmp_path / "classInd.txt", "1 ApplyEyeMakeup\r\n2 ApplyLipstick\r\n3 Archery\r\n")
    assert read_label_names(ucf) == ["ApplyEyeMakeup", "ApplyLipstick", "Archery"]
    bare = _write(tmp_path / "b.txt", "cat\ndog\n")
    assert read_label_names(bare) == ["cat", "dog"]
    shuffled = _write(tmp_path / "s.txt", "1 b\n0 a\n")
    assert read_label_names(shuffled) == ["a", "b"]
    gap = _write(tmp_path / "g.txt", "0 a\n2 c\n")
    with pytest.raises(DataError, match="missing"):
        read_label_names(gap)
    dup = _write(tmp_path / "d.txt", "0 a\n0 b\n1 c\n")
    with pytest.raises(DataError, match="repeats line 1"):
        read_label_names(dup)
    with pytest.raises(DataError, match="empty"):
        read_label_names(_write(tmp_path / "e.txt", "\n"))


def test_write_list_round_trip(tmp_path):
    out = tmp_path / "sub" / "frames.txt"
    n = write_list(out, [("a dir/x", 12, 0), ("/abs/y", 3, 2)])
    assert n == 2
    assert out.read_text() == "a dir/x 12 0\n/abs/y 3 2\n"
    r = read_list(out, "frames", data_root="/r")
    assert [(x.path, x.num_frames, x.label) for x in r.records] == [("/r/a dir/x", 12, 0), ("/abs/y", 3, 2)]
    assert not list(out.parent.glob(".*tmp"))  # atomic write left no temp file

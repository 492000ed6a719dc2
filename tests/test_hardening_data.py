"""Hardening: bad inputs through the real CLI -- broken videos, bad list lines, wrong configs, hostile names,
numeric edge cases. Each problem is one line naming the file (and line), the run goes on where it can, exit 2
where it cannot, and stderr never holds a traceback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers_data import truncate, write_frames, write_video
from tests.helpers_hardening import cli, make_data, text, trained

ESC = b"\x1b"


def _no_tb(proc):
    out, err = text(proc)
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    return out, err


def _ok(*args, **kwargs):
    """Run the CLI and require success without a traceback; returns (stdout, stderr)."""
    p = cli(*args, **kwargs)
    out, err = _no_tb(p)
    assert p.returncode == 0, out + err
    return out, err


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("hard_model"))


@pytest.fixture()
def bad_tree(tmp_path):
    """Good videos plus one of each kind of broken input, and a list naming all of them (with bad lines)."""
    root = make_data(tmp_path / "d")
    v = root / "videos"
    (v / "zero.avi").write_bytes(b"")
    write_video(v / "trunc.avi", 30, 64, 48)
    truncate(v / "trunc.avi", 0.3)
    (v / "text.avi").write_text("this is not a video\n" * 100)
    shutil.copy(v / "c0_v0.avi", v / "real_video.txt")  # wrong extension, valid content: must work
    (v / "isdir.avi").mkdir()  # unreadable as a file (chmod 000 does not stop root)
    write_video(v / "with space.avi", 8, 64, 48)
    lines = (root / "train.txt").read_text().splitlines()
    lines += ["videos/zero.avi 0", "videos/trunc.avi 1", "videos/text.avi 2", "videos/real_video.txt 0",
              "videos/isdir.avi 1", "videos/missing.avi 2", "videos/with space.avi 1",
              "", "videos/c0_v0.avi", "videos/c0_v0.avi x", "videos/c0_v0.avi 7", "   "]
    (root / "mixed.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return root


BAD = ["zero.avi", "trunc.avi", "text.avi", "isdir.avi", "missing.avi"]


def test_prepare_check_names_every_bad_entry_and_line(bad_tree):
    p = cli("prepare", "check", "mixed.txt", "--workers", "1", "--json", cwd=bad_tree)
    out, err = _no_tb(p)
    assert p.returncode == 1, out + err
    both = out
    for name in BAD:
        assert name in both, name
    for ln in (15, 16):  # wrong field count, non-integer label (1-based line numbers; CRLF and blank lines kept)
        assert f"mixed.txt:{ln}" in both or f":{ln}:" in both, (ln, both[-2000:])
    import json

    doc = json.loads(out)
    assert doc["ok"] == 9  # 6 good + wrong extension + path with spaces + label 7 (check has no class count)
    assert all("\n" not in b["reason"] for b in doc["bad"] + doc["bad_lines"])


def test_frame_folder_with_missing_frame_is_named(tmp_path):
    write_frames(tmp_path / "fr" / "a", 8, 64, 48)
    write_frames(tmp_path / "fr" / "b", 8, 64, 48)
    os.remove(tmp_path / "fr" / "b" / "img_00004.jpg")
    (tmp_path / "frames.txt").write_text("fr/a 8 0\nfr/b 8 1\n")
    p = cli("prepare", "check", "frames.txt", "--format", "frames", "--workers", "1", "--json", cwd=tmp_path)
    out, err = _no_tb(p)
    assert p.returncode == 1
    assert "img_00004.jpg" in out + err and "fr/b" in (out + err).replace("\\", "/")


def test_train_and_eval_go_on_past_bad_videos_and_lines(bad_tree):
    out, err = _ok("train", "--config", "cfg.yaml", "--train-list", "mixed.txt", "--val-list", "mixed.txt",
                   cwd=bad_tree)
    assert (bad_tree / "out" / "TSN_best.pdparams").is_file()
    both = out + err
    assert "mixed.txt:16" in both or "mixed.txt:17" in both, both[-3000:]
    p = cli("eval", "--weights", "out/TSN_best.pdparams", "--list", "mixed.txt", "--json", cwd=bad_tree)
    out, err = _no_tb(p)
    # eval scores a list against the model's classes: label 7 of a 3-class model is an error naming the line
    assert p.returncode == 2 and "mixed.txt:17: label 7 >= num_classes 3" in " ".join(err.split()), out + err
    lines = (bad_tree / "mixed.txt").read_bytes().split(b"\r\n")
    (bad_tree / "mixed_eval.txt").write_bytes(b"\r\n".join(ln for ln in lines if not ln.endswith(b" 7")))
    p = cli("eval", "--weights", "out/TSN_best.pdparams", "--list", "mixed_eval.txt", "--json", cwd=bad_tree)
    out, err = _no_tb(p)
    assert p.returncode == 1, out + err  # some videos unreadable: listed, the rest scored
    import json

    doc = json.loads(out)
    bad = " ".join(u["path"] for u in doc["unreadable"])
    for name in ("zero.avi", "text.avi", "isdir.avi", "missing.avi"):  # trunc.avi may decode the sampled frames
        assert name in bad
    assert doc["num_videos"] >= 8


def test_predict_goes_on_past_bad_files(model, bad_tree):
    v = bad_tree / "videos"
    args = [v / "c0_v0.avi", v / "zero.avi", v / "trunc.avi", v / "text.avi", v / "real_video.txt", v / "isdir.avi",
            v / "missing.avi", v / "with space.avi"]
    for how in (["--model", model / "out" / "export"], ["--weights", model / "out" / "TSN_best.pdparams"]):
        p = cli("predict", *args, *how, "--json")
        out, err = _no_tb(p)
        assert p.returncode in (1, 2), out + err
        if p.returncode == 2:  # a missing input may be a usage error as a whole: must be one line naming it
            assert "missing.avi" in err and len(err.strip().splitlines()) <= 3
            continue
        import json

        doc = {Path(r["path"]).name: r for r in json.loads(out)}
        assert "error" not in doc["c0_v0.avi"] and "error" not in doc["real_video.txt"]
        assert "error" not in doc["with space.avi"]
        for name in ("zero.avi", "text.avi"):
            assert doc[name]["error"], name


@pytest.mark.parametrize("content,needle", [
    ("", "empty"),
    ("videos/c0_v0.avi\nvideos/c1_v0.avi\n", "train.txt"),
    ("videos/c0_v0.avi 9\n", "train.txt"),
])
def test_list_wrong_as_a_whole_exits_2(tmp_path, content, needle):
    root = make_data(tmp_path / "d", per_class=1)
    (root / "train.txt").write_text(content)
    p = cli("train", "--config", "cfg.yaml", cwd=root)
    out, err = _no_tb(p)
    assert p.returncode == 2, out + err
    assert needle in err or "train.txt" in err


def test_missing_list_and_bad_config_exit_2(tmp_path):
    root = make_data(tmp_path / "d", per_class=1)
    p = cli("train", "--config", "cfg.yaml", "--train-list", "nope.txt", cwd=root)
    _, err = _no_tb(p)
    assert p.returncode == 2 and "nope.txt" in err
    (root / "bad.yaml").write_text("model: {depth: 18, colour: red}\n")
    p = cli("train", "--config", "bad.yaml", cwd=root)
    _, err = _no_tb(p)
    assert p.returncode == 2 and "colour" in err
    (root / "broken.yaml").write_text("model: {depth: 18\n  - ][\n")
    p = cli("train", "--config", "broken.yaml", cwd=root)
    _, err = _no_tb(p)
    assert p.returncode == 2 and "broken.yaml" in err


def test_yaml_python_tags_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    cfg2 = tmp_path / "evil2.yaml"
    cfg2.write_text(f"runtime:\n  output: !!python/object/new:subprocess.check_output [['touch', '{marker}']]\n")
    for c in (cfg, cfg2):
        p = cli("train", "--config", c, "--dry-run", cwd=tmp_path)
        _, err = _no_tb(p)
        assert p.returncode == 2, err
        assert c.name in err
    assert not marker.exists()


def test_escape_sequences_in_names_never_reach_the_terminal(model, tmp_path):
    root = make_data(tmp_path / "d", per_class=1)
    evil = "\x1b]0;owned\x07\x1b[31mred\x1b[0m"
    (root / "labels.txt").write_text(f"0 {evil}a\n1 {evil}b\n2 {evil}c\n")
    vid = root / "videos" / f"x{evil}.avi"
    shutil.copy(root / "videos" / "c0_v0.avi", vid)
    (root / "train.txt").write_text(f"videos/x{evil}.avi 0\nvideos/c1_v0.avi 1\nvideos/c2_v0.avi 2\n"
                                    f"videos/gone{evil}.avi 1\nvideos/c1_v0.avi {evil}\n")
    runs = [
        cli("prepare", "check", "train.txt", "--workers", "1", cwd=root),
        cli("train", "--config", "cfg.yaml", cwd=root),
        cli("eval", "--weights", "out/TSN_best.pdparams", cwd=root),
        cli("predict", vid, root / "videos" / f"gone{evil}.avi", "--weights", root / "out" / "TSN_best.pdparams"),
        cli("predict", vid, "--weights", root / "out" / "TSN_best.pdparams", "--json"),
    ]
    for p in runs:
        assert ESC not in p.stdout and ESC not in p.stderr, (p.args, p.stdout[-500:], p.stderr[-1500:])
        _no_tb(p)
    assert runs[1].returncode == 0, text(runs[1])


# ---------------------------------------------------------------------------------------------- numbers


def _write_const_video(path: Path, frames: int, value: int = 0, w: int = 64, h: int = 48):
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for _ in range(frames):
        vw.write(np.full((h, w, 3), value, np.uint8))
    vw.release()


def test_black_single_frame_and_short_videos_train_eval_predict(tmp_path):
    root = make_data(tmp_path / "d", per_class=1, seg=5, frames=3)  # seg_num 5 > 3 frames
    _write_const_video(root / "videos" / "black.avi", 8, 0)
    _write_const_video(root / "videos" / "one.avi", 1, 128)
    with open(root / "train.txt", "a") as fh:
        fh.write("videos/black.avi 0\nvideos/one.avi 1\n")
    out, err = _ok("train", "--config", "cfg.yaml", cwd=root)
    out, err = _ok("eval", "--weights", "out/TSN_best.pdparams", "--json", cwd=root)
    import json

    assert json.loads(out)["num_videos"] == 5
    out, err = _ok("predict", root / "videos" / "black.avi", root / "videos" / "one.avi",
                   "--weights", root / "out" / "TSN_best.pdparams", "--json")
    for r in json.loads(out):
        s = [t["score"] for t in r["top_k"]]
        assert all(np.isfinite(s)) and abs(sum(s) - 1) < 1e-3 or len(s) < 3


def test_one_class_dataset(tmp_path):
    root = make_data(tmp_path / "d", num_classes=1, per_class=3)
    out, err = _ok("train", "--config", "cfg.yaml", cwd=root)
    out, err = _ok("eval", "--weights", "out/TSN_best.pdparams", "--json", cwd=root)
    import json

    assert json.loads(out)["top1"] == 1.0
    _ok("export", "--weights", "out/TSN_best.pdparams", "--output", "out/export", cwd=root)
    p = cli("predict", root / "videos" / "c0_v0.avi", "--model", root / "out" / "export", "--json")
    out, err = _no_tb(p)
    assert p.returncode == 0 and json.loads(out)[0]["top_k"][0]["score"] == pytest.approx(1.0)


def test_path_traversal_in_list_entries_via_cli(tmp_path):
    """Frame folders are only ever written under the frames dir, whatever the list says."""
    from tests.helpers_prepare import make_ucf_tree
    from tests.helpers_prepare import write_video as write_small

    root = tmp_path / "ucf"
    make_ucf_tree(root, groups=2, clips=1)
    write_small(tmp_path / "evil.avi")
    sdir = root / "ucfTrainTestlist"
    extra = b"../evil.avi\r\nAlpha/../../evil.avi\r\n/tmp/../etc/passwd\r\nAlpha/..\r\n"
    (sdir / "testlist01.txt").write_bytes((sdir / "testlist01.txt").read_bytes() + extra)
    before = set(tmp_path.iterdir())
    p = cli("prepare", "ucf101", root, "--split", "1", "--frames", "--workers", "1", "--json")
    out, err = _no_tb(p)
    assert p.returncode == 1, err[-2000:]
    import json

    bad = {b["path"]: b["reason"] for b in json.loads(out)["bad"]}
    for entry in ("../evil.avi", "Alpha/../../evil.avi", "/tmp/../etc/passwd", "Alpha/.."):
        assert entry in bad, bad  # each rejected and named
    assert set(tmp_path.iterdir()) == before  # nothing written next to the dataset
    assert all(str(x.resolve()).startswith(str(root.resolve())) for x in root.rglob("*"))

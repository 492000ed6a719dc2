"""`prepare ucf101`: exact list contents per split, bad-entry report, frame extraction, resumption, paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers_cli import REPO
from tests.helpers_prepare import make_ucf_tree
from tsn_cli.errors import DataError
from tsn_cli.prepare.frames import count_frames_on_disk, safe_join
from tsn_cli.prepare.runner import PrepareOptions
from tsn_cli.prepare.ucf101 import prepare_ucf101


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf")
    info = make_ucf_tree(root)
    return root, info


def _expected(info, split: int, subset: str, exclude=()) -> list[tuple[str, int]]:
    """(rel, label) in split-file order for the good entries of a split."""
    rows = []
    for rel, (ci, g) in info["names"].items():
        if rel in info["bad"] or rel in exclude:
            continue
        if (subset == "val") == (g == split):
            rows.append((rel, ci))
    return rows


def _read(path: Path) -> list[str]:
    data = path.read_bytes()
    assert b"\r" not in data  # we write '\n' endings whatever the input had
    return data.decode().splitlines()


def test_video_lists_exact_per_split(ucf, tmp_path):
    root, info = ucf
    rep = prepare_ucf101(root, opts=PrepareOptions(out=tmp_path, workers=1, verify=True))
    assert rep.num_classes == 3 and rep.checks == "full"
    for n in (1, 2, 3):
        for subset in ("train", "val"):
            got = _read(tmp_path / f"ucf101_{subset}_split_{n}_videos.txt")
            videos = os.path.relpath(root / "UCF-101", tmp_path)
            want = [f"{videos}/{rel} {ci}" for rel, ci in _expected(info, n, subset)]
            assert got == want, (n, subset)
    assert _read(tmp_path / "ucf101_label_list.txt") == ["0 Alpha", "1 Beta", "2 Gamma"]
    # split 1 tests on group 1 of 3 classes x 2 clips; every bad entry is in Beta g01
    assert len(_read(tmp_path / "ucf101_val_split_1_videos.txt")) == 6
    assert len(_read(tmp_path / "ucf101_train_split_2_videos.txt")) == 12
    assert not list(tmp_path.glob("*rawframes*"))
    # each bad video reported once, by entry name, with its reason
    reasons = {b.path: b.reason for b in rep.bad}
    assert set(reasons) == set(info["bad"])
    for rel, kind in info["bad"].items():
        assert kind in reasons[rel], (rel, reasons[rel])
    assert rep.exit_code == 1 and rep.videos == 22 and rep.ok == 18


def test_quick_check_misses_only_truncation(ucf, tmp_path):
    root, info = ucf
    rep = prepare_ucf101(root, splits=[1], opts=PrepareOptions(out=tmp_path, workers=1))
    assert rep.checks == "quick"
    assert {b.path for b in rep.bad} == {r for r, k in info["bad"].items() if k != "truncated"}
    assert [p.name for p in sorted(tmp_path.glob("*.txt"))] == [
        "ucf101_label_list.txt", "ucf101_train_split_1_videos.txt", "ucf101_val_split_1_videos.txt"]


def test_frames_lists_match_disk_and_default_out(tmp_path):
    root = tmp_path / "ucf"
    info = make_ucf_tree(root, groups=2, clips=2, frames=9)
    rep = prepare_ucf101(root, opts=PrepareOptions(frames=True, workers=2))
    for subset in ("train", "val"):
        got = _read(root / f"ucf101_{subset}_split_1_rawframes.txt")
        want = [f"rawframes/{rel[:-4]} 9 {ci}" for rel, ci in _expected(info, 1, subset)]
        assert got == want
        vids = _read(root / f"ucf101_{subset}_split_1_videos.txt")
        assert vids == [f"UCF-101/{rel} {ci}" for rel, ci in _expected(info, 1, subset)]
    for line in _read(root / "ucf101_train_split_1_rawframes.txt"):
        d, n, _ = line.split()
        files = sorted(os.listdir(root / d))
        assert files[0] == "img_00001.jpg" and len(files) == int(n) == count_frames_on_disk(root / d)
    # bad videos get no folder and no temporary leftovers
    frames_root = root / "rawframes"
    assert not (frames_root / "Beta" / "v_Beta_g01_c04").exists()
    assert not [p for p in frames_root.rglob("*") if ".tmp-" in p.name]
    assert rep.extraction["extracted"] == 12 and rep.extraction["frames"] == 12 * 9
    assert {b.path for b in rep.bad} == set(info["bad"])
    # a second run extracts nothing and writes identical lists
    before = (root / "ucf101_train_split_1_rawframes.txt").read_bytes()
    rep2 = prepare_ucf101(root, opts=PrepareOptions(frames=True, workers=1))
    assert rep2.extraction["extracted"] == 0 and rep2.extraction["existing"] == 12
    assert (root / "ucf101_train_split_1_rawframes.txt").read_bytes() == before


def test_absolute_and_resize(tmp_path):
    root = tmp_path / "ucf"
    make_ucf_tree(root, groups=2, clips=1)
    opts = PrepareOptions(frames=True, absolute=True, short_side=32, jpeg_quality=80, workers=1, out=tmp_path / "o")
    prepare_ucf101(root, opts=opts)
    import cv2

    lines = _read(tmp_path / "o" / "ucf101_train_split_1_rawframes.txt")
    d = lines[0].split()[0]
    assert os.path.isabs(d)
    img = cv2.imread(os.path.join(d, "img_00001.jpg"))
    assert img.shape[:2] == (32, 43)  # 64x48 -> short side 32, long int(64*32/48+0.5)
    v = _read(tmp_path / "o" / "ucf101_val_split_1_videos.txt")[0].split()[0]
    assert os.path.isabs(v) and os.path.isfile(v)


def test_lists_readable_by_data_loader(ucf, tmp_path):
    from tsn_cli.data.lists import read_label_names, read_list

    root, _ = ucf
    prepare_ucf101(root, splits=[2], opts=PrepareOptions(out=tmp_path / "moved_lists", workers=1))
    res = read_list(tmp_path / "moved_lists" / "ucf101_train_split_2_videos.txt", fmt="video")
    assert res.bad_lines == [] and all(os.path.isfile(r.path) for r in res.records)
    assert read_label_names(tmp_path / "moved_lists" / "ucf101_label_list.txt") == ["Alpha", "Beta", "Gamma"]


def test_path_traversal_never_escapes(tmp_path):
    root = tmp_path / "ucf"
    make_ucf_tree(root, groups=2, clips=1)
    sdir = root / "ucfTrainTestlist"
    (sdir / "classInd.txt").write_bytes(b"1 Alpha\r\n2 Beta\r\n3 Gamma\r\n4 ..\r\n")
    evil = tmp_path / "evil.avi"
    from tests.helpers_prepare import write_video

    write_video(evil)
    extra = b"Alpha/..\r\n../evil.avi\r\n/etc/passwd\r\nAlpha/../../evil.avi 1\r\n"
    (sdir / "testlist01.txt").write_bytes((sdir / "testlist01.txt").read_bytes() + extra)
    out = tmp_path / "out"
    rep = prepare_ucf101(root, splits=[1], opts=PrepareOptions(frames=True, out=out, workers=1))
    msgs = {b.path: b.reason for b in rep.bad}
    assert "unsafe path" in msgs["Alpha/.."]
    assert "unsafe path" in msgs["../evil.avi"]
    assert "/etc/passwd" in msgs or any("passwd" in p for p in msgs)
    val = _read(out / "ucf101_val_split_1_rawframes.txt")
    assert all("evil" not in ln and ".." not in ln for ln in val)
    written = {p.resolve() for p in out.rglob("*")}
    assert all(str(p).startswith(str(out.resolve())) for p in written)
    assert not (tmp_path / "rawframes").exists() and not (out / "evil").exists()


def test_safe_join():
    assert safe_join("/data", "a/b.avi") == Path("/data/a/b.avi")
    for bad in ("../x", "a/../../x", "/abs", "C:/x", "", "a/\x00b", ".."):
        with pytest.raises(ValueError):
            safe_join("/data", bad)


def test_missing_layout_and_split(tmp_path):
    with pytest.raises(DataError, match="not found"):
        prepare_ucf101(tmp_path / "nope")
    root = tmp_path / "ucf"
    make_ucf_tree(root, groups=2, clips=1)  # only split 1 exists
    with pytest.raises(DataError, match="split 3"):
        prepare_ucf101(root, splits=[3])
    (root / "ucfTrainTestlist" / "classInd.txt").write_text("1 A\n1 B\n")
    with pytest.raises(DataError, match="classInd.txt:2"):
        prepare_ucf101(root)


def test_resume_after_kill_mid_video(tmp_path):
    """Kill the extractor (SIGKILL) in the middle of writing a video's frames, then run again."""
    root = tmp_path / "ucf"
    make_ucf_tree(root, groups=2, clips=2, frames=10)
    script = textwrap.dedent(
        f"""
        import os, cv2
        from tsn_cli.prepare.runner import PrepareOptions
        from tsn_cli.prepare.ucf101 import prepare_ucf101
        orig = cv2.imencode
        count = [0]
        def enc(*a, **k):
            count[0] += 1
            if count[0] == 45:  # frame 5 of the 5th video
                os.kill(os.getpid(), 9)
            return orig(*a, **k)
        cv2.imencode = enc
        prepare_ucf101({str(root)!r}, opts=PrepareOptions(frames=True, workers=1))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    frames_root = root / "rawframes"
    done = [p for p in frames_root.rglob("v_*") if p.is_dir() and ".tmp-" not in p.name]
    tmp = [p for p in frames_root.rglob("*") if ".tmp-" in p.name]
    assert len(done) == 4 and len(tmp) == 1
    assert len(list(tmp[0].iterdir())) == 4  # the half-written folder
    assert not (root / "ucf101_train_split_1_rawframes.txt").exists()

    rep = prepare_ucf101(root, opts=PrepareOptions(frames=True, workers=2))
    assert rep.extraction["existing"] == 4 and rep.extraction["extracted"] == 8
    assert not [p for p in frames_root.rglob("*") if ".tmp-" in p.name]
    for line in _read(root / "ucf101_train_split_1_rawframes.txt") + _read(root / "ucf101_val_split_1_rawframes.txt"):
        d, n, _ = line.split()
        assert int(n) == 10 == count_frames_on_disk(root / d)


def test_incomplete_final_folder_is_redone(tmp_path):
    """A folder with the final name but a gap in the numbering (frames deleted by hand) is extracted again."""
    root = tmp_path / "ucf"
    make_ucf_tree(root, groups=2, clips=1, frames=6)
    prepare_ucf101(root, opts=PrepareOptions(frames=True, workers=1))
    d = root / "rawframes" / "Alpha" / "v_Alpha_g02_c01"
    (d / "img_00003.jpg").unlink()
    rep = prepare_ucf101(root, opts=PrepareOptions(frames=True, workers=1))
    assert rep.extraction["extracted"] == 1 and count_frames_on_disk(d) == 6


def test_cli_json_and_exit_codes(tmp_path):
    root = tmp_path / "ucf"
    info = make_ucf_tree(root, groups=2, clips=1)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "tsn_cli", "prepare", "ucf101", str(root), "--frames", "--json",
                           "-j", "2"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == 1 and doc["dataset"] == "ucf101"
    assert {b["path"] for b in doc["bad"]} == set(info["bad"])
    names = {Path(x["path"]).name for x in doc["lists"]}
    assert names >= {"ucf101_train_split_1_rawframes.txt", "ucf101_label_list.txt"}
    proc = subprocess.run([sys.executable, "-m", "tsn_cli", "prepare", "ucf101", str(tmp_path / "missing")],
                          cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr and b"not found" in proc.stderr


def test_extraction_workers_never_fork_a_threaded_process():
    """A process that runs other threads (paddle imported, the Python API) gets a fork server: a worker forked
    from it can deadlock in OpenCV's start-up (seen as a test session that never ended)."""
    import subprocess
    import sys

    code = (
        "import threading, time; from tsn_cli.prepare.frames import pool_context; "
        "print(pool_context().get_start_method()); "
        "threading.Thread(target=time.sleep, args=(5,), daemon=True).start(); "  # a Python thread: still fork
        "print(pool_context().get_start_method()); "
        "from tsn_cli.runtime import import_paddle; p = import_paddle(); p.to_tensor([1.0]) * 2; "
        "print(pool_context().get_start_method())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["fork", "fork", "forkserver"]

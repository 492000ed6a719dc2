"""`tsn predict` for batch jobs: --results resumes after a kill (a partial last line included), .csv results,
--shard splits inputs without overlap, and frame folders / --list files as inputs."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers_cli import REPO, children, running
from tests.helpers_data import write_frames
from tests.helpers_deploy import TOP_CLASS, write_clip

N_CLIPS = 20


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch") / "clips"
    for i in range(N_CLIPS):
        write_clip(folder / f"c{i:02d}.avi", frames=12 + i % 5)
    return folder


def _lines(path):
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_results_resume_after_kill(tiny_export, tsn, clips, tmp_path):
    """Killed mid-job (and a half-written last line added): its decode workers leave with it, the rerun drops the
    partial line, skips the recorded inputs, predicts the rest, and the file ends with every input once, equal to
    a clean run."""
    res = tmp_path / "results.jsonl"
    # many views per clip keep the job running long enough to be killed in the middle
    args = ["predict", clips, "--model", tiny_export.dir, "--seg-num", "10", "--crops", "10", "--results"]
    proc = subprocess.Popen([sys.executable, "-m", "tsn_cli", *map(str, args), res], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if res.exists() and res.read_text().count("\n") >= 3:
                break
            time.sleep(0.02)
        kids = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert kids, "no decode worker was running"
    deadline = time.monotonic() + 20  # a worker checks for its parent every second
    while any(running(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [k for k in kids if running(k)], "a decode worker outlived the killed run"
    before = _lines(res)
    assert 3 <= len(before) < N_CLIPS, f"the job was not killed mid-way ({len(before)} lines)"
    with res.open("ab") as fh:
        fh.write(b'{"path": "' + str(clips).encode() + b'/c19.avi", "top_')  # a kill in the middle of a write
    r = tsn(*args, res, "--json", check=True)
    summary = json.loads(r.stdout)
    assert "removed a partial last line" in r.stderr
    assert summary["already_recorded"] == len(before) and summary["predicted"] == N_CLIPS - len(before)
    after = _lines(res)
    assert after[:len(before)] == before
    assert sorted(d["path"] for d in after) == sorted(str(p) for p in clips.glob("*.avi"))
    clean = tmp_path / "clean.jsonl"
    tsn(*args, clean, check=True)
    by_path = {d["path"]: d for d in _lines(clean)}
    for d in after:
        assert [t["class_id"] for t in d["top_k"]] == [t["class_id"] for t in by_path[d["path"]]["top_k"]]
        assert d["top_k"][0]["score"] == pytest.approx(by_path[d["path"]]["top_k"][0]["score"], abs=1e-6)
    again = json.loads(tsn(*args, res, "--json", check=True).stdout)
    assert again["already_recorded"] == N_CLIPS and again["predicted"] == 0
    assert len(_lines(res)) == N_CLIPS


def test_results_csv_with_a_bad_input(tiny_export, tsn, clips, tmp_path):
    """CSV results: a header, one row per input, the error of a corrupt file in its row (exit 1); a rerun adds
    nothing. A results file of another kind is refused with a one-line error."""
    bad = tmp_path / "corrupt.avi"
    bad.write_bytes(b"RIFF" + b"\0" * 64)
    res = tmp_path / "r.csv"
    r = tsn("predict", clips / "c00.avi", bad, "--model", tiny_export.dir, "--results", res)
    assert r.returncode == 1 and "Failed inputs" in r.stdout
    rows = list(csv.DictReader(res.open()))
    assert [row["path"] for row in rows] == [str(clips / "c00.avi"), str(bad)]
    assert int(rows[0]["class_id"]) == TOP_CLASS and json.loads(rows[0]["top_k"])[0]["class_id"] == TOP_CLASS
    assert rows[1]["error"] and not rows[1]["label"]
    r = tsn("predict", clips / "c00.avi", bad, "--model", tiny_export.dir, "--results", res, "--json")
    assert json.loads(r.stdout)["already_recorded"] == 2 and len(list(csv.DictReader(res.open()))) == 2
    r = tsn("predict", clips / "c00.avi", "--model", tiny_export.dir, "--results", tmp_path / "r.txt")
    assert r.returncode == 2 and "--results" in r.stderr and ".jsonl or .csv" in r.stderr


def test_shards_split_inputs_without_overlap(tiny_export, tsn, clips, tmp_path):
    """Three shards cover every input exactly once; a bad --shard is a usage error. The inputs are named relative
    to their folder's parent: a shard is a hash of the path as given, so with the temp folder's absolute path in it
    the split would change from run to run (pytest-362 left shard 3 empty)."""
    seen = []
    for i in (1, 2, 3):
        res = tmp_path / f"part{i}.jsonl"
        r = tsn("predict", clips.name, "--model", tiny_export.dir, "--shard", f"{i}/3", "--results", res, "--json",
                check=True, cwd=clips.parent)
        part = [d["path"] for d in _lines(res)]
        assert json.loads(r.stdout)["inputs"] == len(part) > 0
        seen += part
    assert sorted(seen) == sorted(str(p.relative_to(clips.parent)) for p in clips.glob("*.avi"))
    r = tsn("predict", clips, "--model", tiny_export.dir, "--shard", "0/3")
    assert r.returncode == 2 and "--shard" in r.stderr and "between 1 and N" in r.stderr


def test_frame_folders_and_list_files(tiny_export, tsn, tmp_path):
    """A rawframes tree gives one input per frame folder; --list reads frames and video lists."""
    raw = tmp_path / "rawframes"
    write_frames(raw / "v1", num_frames=12)
    write_frames(raw / "v2", num_frames=9)
    video = write_clip(tmp_path / "videos" / "a.avi")
    (tmp_path / "frames.list").write_text(f"{raw / 'v1'} 12 0\n{raw / 'v2'} 9 1\n")
    (tmp_path / "videos.list").write_text("videos/a.avi 2\nvideos/missing.avi 1\nbroken line here x\n")
    r = tsn("predict", raw, raw / "v2", "--model", tiny_export.dir, "--json", check=True)
    doc = json.loads(r.stdout)
    assert [d["path"] for d in doc] == [str(raw / "v1"), str(raw / "v2"), str(raw / "v2")]
    assert all(d["top_k"][0]["class_id"] == TOP_CLASS for d in doc)
    r = tsn("predict", "--list", tmp_path / "frames.list", "--list", tmp_path / "videos.list", "--model",
            tiny_export.dir, "--json")
    assert r.returncode == 1  # videos/missing.avi
    doc = json.loads(r.stdout)
    assert [d["path"] for d in doc] == [str(raw / "v1"), str(raw / "v2"), video, str(tmp_path / "videos/missing.avi")]
    assert "error" in doc[3] and "file not found" in doc[3]["error"]
    assert "videos.list:3" in r.stderr  # the bad line is reported, not silently dropped

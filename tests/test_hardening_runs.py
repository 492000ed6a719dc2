"""Hardening II (issue 17), families 7, 8 and 11(c): concurrent runs never mix outputs (an exclusive lock per
output, `--wait`), frames written with other settings are never reported as existing (also shard by shard), and
a config is validated once, on the final merge of file, `-o` and flags. Every run is bounded in time and memory
(`bounded`, as in test_hardening_bounded)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

from tests.helpers_hardening import make_data
from tests.helpers_prepare import make_class_tree
from tests.test_hardening_bounded import TIMEOUT, TIMEOUT_PADDLE, _limit, bounded, one_line_error


# ------------------------------------------------------------------------------------ 11(c). final-merge validation
def test_override_short_side_is_judged_with_the_target_size_flag(tmp_path):
    make_data(tmp_path, frames=4)
    base = ["train", "--config", "cfg.yaml", "--dry-run", "--json"]
    small = bounded(*base, "--target-size", "32", cwd=tmp_path, timeout=TIMEOUT_PADDLE)
    p = bounded(*base, "--target-size", "64", "-o", "augment.short_side=72", cwd=tmp_path, timeout=TIMEOUT_PADDLE)
    assert p.returncode == 0 and small.returncode == 0, p.stderr.decode()[-2000:]
    ratio = json.loads(p.stdout)["gflops_per_frame"] / json.loads(small.stdout)["gflops_per_frame"]
    assert 3.5 < ratio < 4.5  # 64 px crops, not 32 (and not rejected before --target-size applied)
    # each value valid alone, the final combination is not: one line naming both fields and who set them
    p = bounded(*base, "--target-size", "96", "-o", "augment.short_side=72", cwd=tmp_path)
    one_line_error(p, "-o augment.short_side=72", "--target-size 96",
                   "target_size (96) must not exceed short_side (72)")
    p = bounded(*base, "-o", "augment.short_side=72", cwd=tmp_path)  # the config file's target_size 32: fine
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    p = bounded(*base, "-o", "augment.short_side=abc", "--target-size", "64", cwd=tmp_path)  # a bad value: named
    one_line_error(p, "-o augment.short_side=abc", "augment.short_side")


# ------------------------------------------------------------------------------------------ 7. concurrent runs
_HOLD = """
import sys
from tsn_cli.fsutil import exclusive_lock
with exclusive_lock(sys.argv[1], what=sys.argv[2], inside=sys.argv[3] == "inside"):
    print("locked", flush=True)
    sys.stdin.read()  # held until the test closes our stdin
"""


class _Holder:
    """A child process holding `target`'s lock through the same helper the commands use, until `release()`."""

    def __init__(self, target: Path, what: str = "tsn prepare", inside: bool = True) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(target), what, "inside" if inside else ""],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=_limit)
        assert _line(self.proc.stdout, "locked")
        self.pid = self.proc.pid

    def release(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=TIMEOUT) == 0


def _line(stream, needle: str, timeout: float = TIMEOUT) -> str:
    """The first line of `stream` holding `needle`, read within `timeout` s (select: never blocks past it)."""
    import time

    end = time.monotonic() + timeout
    buf = b""
    fd = stream.fileno()
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
        for ln in buf.decode("utf-8", "replace").splitlines():
            if needle in ln:
                return ln
    raise AssertionError(f"{needle!r} not seen within {timeout} s: {buf.decode('utf-8', 'replace')[-2000:]}")


def _start(*args) -> subprocess.Popen:
    env = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="2", GLOG_minloglevel="2")
    return subprocess.Popen([sys.executable, "-m", "tsn_cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, preexec_fn=_limit)


def _whole(out: Path, frames: Path, expect: int) -> int:
    """Assert every frames-list row names a folder holding exactly its listed frames (`expect` each), every frame
    folder is listed and no temporary folder is left; returns the row count."""
    rows = [r.split() for s in ("train", "val") for r in (out / f"{s}_rawframes.txt").read_text().splitlines()]
    listed = {(out / r[0]).resolve() for r in rows}
    for r in rows:
        assert int(r[1]) == expect == len(list((out / r[0]).glob("img_*.jpg"))), r
    assert listed == {p.parent.resolve() for p in frames.rglob("img_00001.jpg")}
    assert not [p for p in frames.rglob("*") if ".tmp-" in p.name]
    return len(rows)


def test_a_second_prepare_stops_naming_the_pid_or_waits(tmp_path):
    root = tmp_path / "clips"
    info = make_class_tree(root, groups=2, clips=2, frames=5, bikes=False)
    cmd = ["prepare", "folder", root, "--frames", "--short-side", "32", "-j", "1", "--json"]
    holder = _Holder(root)  # another tsn prepare writing this dataset's lists
    try:
        one_line_error(bounded(*cmd), f"{root} is in use by pid {holder.pid} (another tsn prepare); wait for it "
                       "or pass --wait")
        assert not (root / "train_videos.txt").exists() and not (root / "rawframes").exists()
        waiting = _start(*cmd, "--wait")
        assert f"{root} is in use by pid {holder.pid}" in _line(waiting.stderr, "waiting for it to finish")
        assert waiting.poll() is None and not (root / "train_videos.txt").exists()  # still waiting, wrote nothing
    finally:
        holder.release()
    out, err = waiting.communicate(timeout=TIMEOUT)
    assert waiting.returncode == 1, err.decode()[-2000:]  # the tree's bad videos
    assert json.loads(out)["ok"] == len(info["good"]) == _whole(root, root / "rawframes", 5)
    assert not (root / ".tsn.lock").exists()

    frames = tmp_path / "shared_frames"  # another run's frame root (--frames-dir), its lists elsewhere
    holder = _Holder(frames)
    try:
        one_line_error(bounded(*cmd, "--out", tmp_path / "lists", "--frames-dir", frames),
                       f"{frames} is in use by pid {holder.pid}")
    finally:
        holder.release()
    demo = tmp_path / "demo"
    holder = _Holder(demo)
    try:
        one_line_error(bounded("prepare", "demo", demo), f"{demo} is in use by pid {holder.pid}")
    finally:
        holder.release()


def test_two_prepare_runs_at_once_with_wait_leave_whole_outputs(tmp_path):
    root = tmp_path / "clips"
    info = make_class_tree(root, groups=2, clips=2, frames=5, bikes=False)
    cmd = ["prepare", "folder", root, "--frames", "-j", "1", "--wait", "--json"]
    runs = [_start(*cmd), _start(*cmd, "--jpeg-quality", "80")]  # at once; whichever runs second extracts again
    for p in runs:
        out, err = p.communicate(timeout=TIMEOUT * 2)
        assert p.returncode == 1 and json.loads(out)["ok"] == len(info["good"]), err.decode()[-2000:]
    assert _whole(root, root / "rawframes", 5) == len(info["good"])


def test_shards_never_lock_each_other(tmp_path):
    root = tmp_path / "clips"
    make_class_tree(root, groups=2, clips=2, frames=5, bikes=False)
    holder = _Holder(root / "rawframes")  # a plain run holds the frame root: shards still run (by design)
    try:
        p = bounded("prepare", "folder", root, "--frames", "-j", "1", "--shard", "1/2", "--json")
        assert p.returncode in (0, 1) and json.loads(p.stdout)["extraction"]["extracted"] > 0, p.stderr.decode()
    finally:
        holder.release()


def test_second_export_waits_with_wait(tiny_export, tmp_path):
    out = tmp_path / "exp"
    holder = _Holder(out, what="tsn export", inside=False)
    try:
        args = ["export", "--weights", tiny_export.weights, "--config", tiny_export.cfg_file, "--output", out]
        one_line_error(bounded(*args, timeout=TIMEOUT_PADDLE), f"{out} is in use by pid {holder.pid} (another "
                       "tsn export); wait for it or pass --wait")
        waiting = _start(*args, "--wait")
        _line(waiting.stderr, "waiting for it to finish", timeout=TIMEOUT_PADDLE)
        assert waiting.poll() is None and not out.exists()
    finally:
        holder.release()
    _, err = waiting.communicate(timeout=TIMEOUT_PADDLE)
    assert waiting.returncode == 0, err.decode()[-2000:]
    assert (out / "tsn.yaml").is_file()


# ----------------------------------------------------------------------------------------- 8. stale outputs
def _short_sides(frames: Path) -> set[int]:
    import cv2

    return {min(cv2.imread(str(p)).shape[:2]) for p in frames.rglob("img_00001.jpg")}


def test_shards_extract_again_folders_written_with_other_settings(tmp_path):
    root = tmp_path / "clips"
    info = make_class_tree(root, groups=2, clips=2, frames=5, bikes=False)
    frames = root / "rawframes"
    cmd = ["prepare", "folder", root, "--frames", "-j", "1", "--json"]
    old, new = ("--short-side", "32"), ("--short-side", "40", "--jpeg-quality", "50")

    def run(*args) -> dict:
        p = bounded(*cmd, *args)
        assert p.returncode == 1, p.stderr.decode()[-2000:]  # the tree's bad videos
        return json.loads(p.stdout)

    first = run(*old, "--shard", "1/2")["extraction"]
    assert first["extracted"] > 0 and _short_sides(frames) == {32}
    second = run(*new, "--shard", "2/2")["extraction"]  # changed settings: its own folders are new
    assert second["extracted"] > 0 and first["extracted"] + second["extracted"] == len(info["good"])
    again = run(*new, "--shard", "1/2")  # shard 1's folders were written with the old settings: never "existing"
    assert again["extraction"]["existing"] == 0
    assert again["extraction"]["extracted"] == again["extraction"]["extracted_again"] == first["extracted"]
    assert any("had other settings (short_side 32 -> 40, jpeg_quality 95 -> 50): extracted again" in w
               for w in again["warnings"]), again["warnings"]
    assert _short_sides(frames) == {40}
    plain = run(*new)  # every folder now records these settings: nothing to extract, lists written
    assert (plain["extraction"]["extracted"], plain["extraction"]["existing"]) == (0, len(info["good"]))
    assert _whole(root, frames, 5) == len(info["good"])
    back = run(*old, "--shard", "2/2")["extraction"]  # and back: shard 2 redoes its own, whatever the root says
    assert back["extracted"] == back["extracted_again"] == second["extracted"] and back["existing"] == 0
    assert _short_sides(frames) == {32, 40}
    assert not [p for p in frames.rglob("*") if ".tmp-" in p.name]

"""What the commands leave on disk: plain file modes under any umask, one run per training folder, one demo per
folder, and `--gpus` checked before Paddle's launcher runs (issue 12, items 3, 5 and 6)."""

from __future__ import annotations

import json

import pytest

from tests.helpers_cli import run_tsn
from tests.helpers_train import make_tiny_data, write_tiny_config

CHAIN_CONFIG = """model: {depth: 18, num_classes: 2, seg_num: 2}
data: {format: video, train_list: d/ucf101_train_split_1_videos.txt, val_list: d/ucf101_val_split_1_videos.txt,
       label_names: d/ucf101_label_list.txt}
augment: {short_side: 36, target_size: 32}
train: {epochs: 1, batch_size: 4, val_interval: 1}
eval: {batch_size: 4}
runtime: {workers: 0, output: out, device: cpu, threads: 1, seed: 1}
"""
DEMO = ("--num-classes", "2", "--videos-per-class", "8", "--frames", "4")


def tsn_as(*args, cwd, umask=None, timeout=600):
    """The `tsn` CLI with ARGS (`run_tsn`), optionally under `umask` (text output)."""
    env = {"COLUMNS": "1000", "OMP_NUM_THREADS": "1", "GLOG_minloglevel": "2"}  # rich wraps at the width
    return run_tsn(*args, cwd=cwd, timeout=timeout, env=env, umask=umask)


def ok(proc):
    assert proc.returncode == 0, (proc.args, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def one_line_error(proc, *needles):
    """Exit 2, exactly one non-blank line on stderr (no traceback, no launcher output) holding every needle."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-3000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------- file modes


@pytest.fixture(scope="module", params=[0o022, 0o077], ids=["umask022", "umask077"])
def chain(request, tmp_path_factory):
    """demo -> lists + frames -> train -> export -> eval reports, every command under the umask."""
    mask = request.param
    root = tmp_path_factory.mktemp(f"umask{mask:03o}")
    (root / "cfg.yaml").write_text(CHAIN_CONFIG)
    for args in [("prepare", "demo", "d", *DEMO),
                 ("prepare", "ucf101", "d", "--split", "1", "--frames", "--workers", "1"),
                 ("train", "--config", "cfg.yaml"),
                 ("export", "--weights", "out/TSN_best.pdparams", "--output", "out/export"),
                 ("eval", "--weights", "out/TSN_best.pdparams", "--output", "out/eval")]:
        ok(tsn_as(*args, cwd=root, umask=mask))
    return root, mask


def test_every_written_file_and_folder_gets_the_plain_mode_for_the_umask(chain):
    root, mask = chain
    want_file, want_dir = 0o666 & ~mask, 0o777 & ~mask
    seen, wrong = set(), []
    for top in (root / "d", root / "out"):
        for p in [top, *top.rglob("*")]:
            mode = p.stat().st_mode & 0o777
            if mode != (want_dir if p.is_dir() else want_file):
                wrong.append(f"{oct(mode)} {p.relative_to(root)}")
            seen.add(p.name)
    assert not wrong, wrong[:20]
    # the files the issue named are among them (atomic writes and plain ones alike)
    for name in ("TSN_best.pdparams", "TSN_epoch_00001.pdopt", "config.yaml", "metrics.jsonl", "curves.png",
                 "tsn.yaml", "TSN.pdiparams", "trainlist01.txt", "ucf101_train_split_1_rawframes.txt",
                 "predictions.csv", "confusion_matrix.png", "img_00001.jpg", ".tsn-demo.json"):
        assert name in seen, name


# ---------------------------------------------------------------------------------------------- train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("outputs_data"))


def test_second_train_into_a_used_folder_is_refused_and_overwrite_starts_afresh(tiny, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # an existing folder with unrelated files is fine
    cfg = write_tiny_config(tmp_path / "c.yaml", tiny, out, epochs=1, val=True)
    ok(tsn_as("train", "--config", cfg, cwd=tmp_path))
    metrics = (out / "metrics.jsonl").read_bytes()
    best = (out / "TSN_best.pdparams").stat()

    p = tsn_as("train", "--config", cfg, "--epochs", "2", cwd=tmp_path)
    line = one_line_error(p, str(out), "already holds a training run", "TSN_epoch_00001.pdparams", "--resume auto",
                          "another --output", "--overwrite")
    assert "metrics.jsonl" in line
    assert (out / "metrics.jsonl").read_bytes() == metrics
    assert (out / "TSN_best.pdparams").stat().st_mtime_ns == best.st_mtime_ns
    assert not (out / "TSN_epoch_00002.pdparams").exists()

    p = ok(tsn_as("train", "--config", cfg, "--dry-run", cwd=tmp_path))  # writes nothing: only a warning
    assert "warning:" in p.stderr and "already holds a training run" in " ".join(p.stderr.split())
    one_line_error(tsn_as("train", "--config", cfg, "--overwrite", "--resume", "auto", cwd=tmp_path), "only one")

    p = ok(tsn_as("train", "--config", cfg, "--epochs", "2", "--overwrite", "--json", cwd=tmp_path))
    assert "--overwrite: removed" in " ".join(p.stderr.split())
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # the old run's epoch 1 row is gone, not appended to
    assert json.loads(p.stdout)["epochs_done"] == 2
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_auto_never_starts_afresh_on_top_of_a_previous_run(tiny, tmp_path):
    """Results but no complete checkpoint (killed before the first one): --resume auto would start over and mix."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"epoch": 1, "loss": 1.0}\n')
    (out / "TSN_epoch_00002.pdparams").write_bytes(b"")  # its .pdopt and .state.json never got written
    cfg = write_tiny_config(tmp_path / "c.yaml", tiny, out, epochs=1)
    one_line_error(tsn_as("train", "--config", cfg, "--resume", "auto", cwd=tmp_path),
                   "no complete checkpoint", "--overwrite")
    other = tmp_path / "other" / "TSN_epoch_00001.pdparams"  # a checkpoint of another run, continued in this folder
    other.parent.mkdir()
    other.write_bytes(b"")
    one_line_error(tsn_as("train", "--config", cfg, "--resume", other, cwd=tmp_path), "not in --output", "another run")
    assert (out / "metrics.jsonl").read_text() == '{"epoch": 1, "loss": 1.0}\n'


def test_gpus_is_checked_before_the_launcher_runs(tiny, tmp_path):
    cfg = write_tiny_config(tmp_path / "c.yaml", tiny, tmp_path / "run")
    p = tsn_as("train", "--config", cfg, "--gpus", "0,1", "--dry-run", cwd=tmp_path)
    one_line_error(p, "--gpus 0,1", "CUDA", "paddlepaddle-gpu")
    assert not p.stdout.strip()
    assert not (tmp_path / "log").exists() and not (tmp_path / "run").exists()  # nothing written anywhere
    one_line_error(tsn_as("train", "--config", cfg, "--gpus", "0,x", cwd=tmp_path), "--gpus", "e.g. --gpus 0,1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


# ---------------------------------------------------------------------------------------------- prepare demo


def test_prepare_demo_into_a_non_empty_folder_is_refused(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "x.txt").write_text("mine")
    for extra in ((), ("--overwrite",)):  # --overwrite only ever replaces a previous demo
        one_line_error(tsn_as("prepare", "demo", d, *DEMO, *extra, cwd=tmp_path), str(d), "not empty", "x.txt")
    assert sorted(p.name for p in d.iterdir()) == ["x.txt"]


def test_prepare_demo_again_is_refused_and_overwrite_leaves_no_stale_lists(tmp_path):
    d = tmp_path / "d"
    ok(tsn_as("prepare", "demo", d, "--num-classes", "2", "--videos-per-class", "16", "--frames", "4", cwd=tmp_path))
    ok(tsn_as("prepare", "ucf101", d, "--workers", "1", cwd=tmp_path))
    assert (d / "ucfTrainTestlist" / "trainlist03.txt").is_file() and (d / "ucf101_val_split_3_videos.txt").is_file()
    before = {p: p.stat().st_mtime_ns for p in d.rglob("*")}

    p = tsn_as("prepare", "demo", d, *DEMO, cwd=tmp_path)
    one_line_error(p, str(d), "already holds a demo dataset (2 classes, 16 videos per class", "--overwrite")
    assert {p: p.stat().st_mtime_ns for p in d.rglob("*")} == before

    (d / "notes.txt").write_text("mine")
    ok(tsn_as("prepare", "demo", d, *DEMO, "--overwrite", cwd=tmp_path))
    split_files = sorted(p.name for p in (d / "ucfTrainTestlist").iterdir())
    assert split_files == ["classInd.txt", "testlist01.txt", "trainlist01.txt"]
    assert not list(d.glob("ucf101_*"))  # lists built from the old demo are gone with it
    assert len(list((d / "UCF-101").rglob("*.avi"))) == 16 and (d / "notes.txt").read_text() == "mine"
    assert json.loads((d / ".tsn-demo.json").read_text())["videos_per_class"] == 8


def test_an_interrupted_demo_resumes_with_the_same_settings_only(tmp_path):
    d = tmp_path / "d"
    ok(tsn_as("prepare", "demo", d, *DEMO, cwd=tmp_path))
    marker = d / ".tsn-demo.json"
    meta = json.loads(marker.read_text())
    marker.write_text(json.dumps({**meta, "complete": False}))  # as a kill before the split files leaves it
    gone = sorted((d / "UCF-101").rglob("*.avi"))[0]
    gone.unlink()
    other = tsn_as("prepare", "demo", d, *DEMO[:-1], "5", cwd=tmp_path)  # other --frames: not the same demo
    one_line_error(other, "unfinished demo dataset", "--overwrite")
    ok(tsn_as("prepare", "demo", d, *DEMO, cwd=tmp_path))
    assert gone.is_file() and json.loads(marker.read_text())["complete"] is True

"""`tsn eval` as a user runs it: JSON schema, --output reports, --save-scores, exit code 1 with unreadable
videos listed, PaddleVideo-layout checkpoints with the K400 config, and 2-process distributed eval."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import helpers_eval as H
from tests.helpers_cli import REPO, run_tsn


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    case = H.make_case(tmp_path_factory.mktemp("evalcli"))
    case["cfg"] = H.write_config(case["root"] / "tiny.yaml", case["cfg_dict"])
    return case


def _json(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):])


def test_json_schema_reports_and_scores(setup):
    out = setup["root"] / "reports"
    npz = setup["root"] / "scores.npz"
    p = run_tsn("eval", "--weights", setup["weights"], "--config", setup["cfg"], "--json", "--output", out,
                "--save-scores", npz, cwd=setup["root"])
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)  # stdout is pure JSON
    assert {"top1", "top5", "mean_class_accuracy", "num_videos", "per_class", "unreadable", "warnings"} <= set(s)
    assert isinstance(s["top1"], float) and isinstance(s["top5"], float) and isinstance(s["num_videos"], int)
    assert s["top1"] == pytest.approx(8 / 11) and s["mean_class_accuracy"] == pytest.approx(0.75)
    assert s["num_videos"] == 11 and s["unreadable"] == [] and s["warnings"] == []
    assert [set(c) for c in s["per_class"]] == [{"class_id", "label", "accuracy", "count"}] * 3
    assert [c["label"] for c in s["per_class"]] == setup["names"]
    # confusion matrix CSV: header + one row per class, the designed counts
    rows = list(csv.reader((out / "confusion_matrix.csv").open()))
    assert rows[0][1:] == setup["names"]
    np.testing.assert_array_equal(np.array([r[1:] for r in rows[1:]], int), H.CONFUSION)
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pv = list(csv.DictReader((out / "predictions.csv").open()))
    assert [r["path"] for r in pv] == setup["paths"]
    assert [setup["names"].index(r["prediction"]) for r in pv] == H.PREDS.tolist()
    assert sum(int(r["correct"]) for r in pv) == 8
    assert all(len(r["top5"].split(" ")) == 3 for r in pv)  # 3 classes: the top-5 column has 3 names
    # saved scores load without pickle and reproduce the metrics
    z = np.load(npz, allow_pickle=False)
    assert z["scores"].shape == (11, 3) and z["scores"].dtype == np.float32
    np.testing.assert_array_equal(z["labels"], H.LABELS)
    np.testing.assert_array_equal(z["scores"].argmax(1), H.PREDS)
    assert list(z["paths"]) == setup["paths"] and list(z["class_names"]) == setup["names"]
    assert str(z["average"]) == "logits"
    assert float((z["scores"].argmax(1) == z["labels"]).mean()) == pytest.approx(s["top1"])


def test_table_output_and_corrupt_video_exit_code(setup):
    bad = H.corrupt_video(setup["root"] / "v_Corrupt_g09_c01.avi")
    lst = H.write_list(setup["root"] / "bad.list", [setup["paths"][0], str(bad), *setup["paths"][1:]],
                       [0, 2, *setup["labels"][1:]])
    p = run_tsn("eval", "--weights", setup["weights"], "--config", setup["cfg"], "--list", lst, "--workers", "1",
                cwd=setup["root"])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    text = p.stdout + p.stderr
    assert "v_Corrupt_g09_c01.avi" in text and "unreadable" in text.lower()
    assert "top-1" in text and "0.7273" in text  # the other 11 were scored as designed
    assert "Worst classes" in text and setup["names"][2] in text
    pj = run_tsn("eval", "--weights", setup["weights"], "--config", setup["cfg"], "--list", lst, "--json",
                 cwd=setup["root"])
    assert pj.returncode == 1
    s = json.loads(pj.stdout)
    assert [u["path"] for u in s["unreadable"]] == [str(bad)] and s["unreadable"][0]["reason"]
    assert s["num_videos"] == 11


def test_truncated_video_is_scored_and_flagged(setup):
    """A video cut to 60 % of its bytes decodes only partly: it is scored from the frames that decode (not
    silently): listed under "warnings" in --json with `prepare check`'s reason and its list line, counted and
    listed in the tables; exit 0 (nothing unreadable). Workers 0 and 1 (the reason found again in the main
    process) say the same."""
    from tsn_cli.data.probe import check_video

    src = Path(setup["paths"][4]).read_bytes()
    cut = setup["root"] / "v_Cut_g09_c01.avi"
    cut.write_bytes(src[: int(len(src) * 0.6)])
    reason = check_video(str(cut)).reason
    assert reason and reason.startswith("truncated: ")
    lst = H.write_list(setup["root"] / "cut.list", [*setup["paths"], str(cut)], [*setup["labels"], 1])
    args = ["eval", "--weights", setup["weights"], "--config", setup["cfg"], "--list", lst]
    p = run_tsn(*args, "--json", "--workers", "0", cwd=setup["root"])
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["num_videos"] == 12 and s["unreadable"] == []
    assert [set(w) for w in s["warnings"]] == [{"path", "warning", "line"}]
    w = s["warnings"][0]
    assert w["path"] == str(cut) and w["line"] == 12 and w["warning"].startswith(reason + "; sampled from those ")
    t = run_tsn(*args, "--workers", "1", cwd=setup["root"])
    assert t.returncode == 0, t.stderr
    assert "with warnings (scored)" in t.stdout and "Videos with warnings" in t.stdout
    assert "v_Cut_g09_c01.avi" in t.stdout
    assert reason in t.stdout and "1 video(s) decode only partly" in t.stderr


def test_paddlevideo_checkpoint_with_k400_config(setup):
    """A checkpoint with PaddleVideo's Recognizer2D state-dict keys (ResNet-50, 400 classes) evaluates with
    configs/tsn_k400_videos.yaml unchanged (224 px, CenterCrop, 3 segments); names come from the label list."""
    from tsn_cli.model.checkpoint import load_state, save_state

    root = setup["root"] / "k400"
    root.mkdir()
    names = [f"action_{i:03d}" for i in range(400)]
    labels_file = H.write_label_names(root / "Kinetics-400_label_list.txt", names)
    model = H.build_model(seed=1, num_classes=400, depth=50)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    # FC weight 0 and a bias peaked at class 7: every video is predicted as class 7 (known result)
    state["head.fc.weight"] = np.zeros_like(state["head.fc.weight"])
    bias = np.zeros(400, np.float32)
    bias[7], bias[3] = 5.0, 4.0
    state["head.fc.bias"] = bias
    ckpt = save_state(state, root / "TSN_k400.pdparams")
    keys = set(load_state(ckpt))
    assert {"backbone.conv._conv.weight", "backbone.res2a.conv0._batch_norm._mean", "head.fc.weight"} <= keys
    lst = H.write_list(root / "val.list", setup["paths"][:2] + setup["paths"][4:5], [7, 7, 3])
    p = run_tsn("eval", "--weights", ckpt, "--config", REPO / "configs" / "tsn_k400_videos.yaml", "--list", lst,
                "-o", f"data.label_names={labels_file}", "--workers", "0", "--json", cwd=root)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["protocol"]["target_size"] == 224 and s["protocol"]["seg_num"] == 3 and s["protocol"]["crops"] == 1
    assert s["top1"] == pytest.approx(2 / 3) and s["top5"] == 1.0
    assert len(s["per_class"]) == 400 and s["per_class"][7]["label"] == "action_007"
    assert s["per_class"][7]["accuracy"] == 1.0 and s["per_class"][3]["accuracy"] == 0.0
    assert s["per_class"][0]["accuracy"] is None  # no videos of that class
    assert s["mean_class_accuracy"] == pytest.approx(0.5)
    assert "loaded 267/267" in p.stderr or "missing 0; unexpected 0" in p.stderr


@pytest.mark.slow
def test_distributed_two_processes_equals_one(setup):
    """paddle.distributed.launch with 2 CPU processes (gloo): 11 videos + 1 corrupt = 12 -> no padding; the list
    of 11 readable + 2 corrupt = 13 makes the sampler pad one duplicate, which must not be counted."""
    bad = H.corrupt_video(setup["root"] / "v_Dist_g09_c01.avi")
    paths = setup["paths"] + [str(bad), str(bad)]
    lst = H.write_list(setup["root"] / "dist.list", paths, setup["labels"] + [0, 1])
    args = ["eval", "--weights", str(setup["weights"]), "--config", str(setup["cfg"]), "--list", str(lst), "--json",
            "--save-scores", str(setup["root"] / "dist.npz")]
    single = run_tsn(*args[:-2], cwd=setup["root"])
    assert single.returncode == 1, single.stderr
    logdir = setup["root"] / "dist_logs"
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    # The `tsn` next to this interpreter (a venv's), not whichever one PATH finds first.
    local = Path(sys.executable).with_name("tsn")
    tsn_exe = str(local) if local.exists() else shutil.which("tsn")
    p = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--host", "127.0.0.1", "--nproc_per_node",
                        "2", "--log_dir", str(logdir), tsn_exe, *args], cwd=setup["root"], capture_output=True,
                       text=True, timeout=120, env=env)
    log0 = (logdir / "workerlog.0").read_text()
    log1 = (logdir / "workerlog.1").read_text()
    s1, s2 = json.loads(single.stdout), _json(log0)
    assert "{" not in log1  # only rank 0 prints
    for key in ("top1", "top5", "mean_class_accuracy", "num_videos", "per_class", "unreadable"):
        assert s2[key] == s1[key], key
    assert s2["num_videos"] == 11 and len(s2["unreadable"]) == 2 and s2["protocol"]["processes"] == 2
    z = np.load(setup["root"] / "dist.npz")
    assert list(z["paths"]) == setup["paths"] and list(z["indices"]) == list(range(11))
    assert p.returncode != 0  # unreadable videos -> exit code 1 propagates through the launcher

"""The quick-start chain in miniature, through the real CLI: prepare demo -> prepare ucf101 -> train -> eval ->
export -> predict. Checks that each step's output is what the next one needs and that the results agree."""

from __future__ import annotations

import csv
import json

import pytest

from tests.helpers_cli import REPO, run_tsn

TINY = ["-o", "augment.short_side=40", "-o", "augment.target_size=32", "--epochs", "2", "--batch-size", "4",
        "--workers", "0", "--num-classes", "3", "-o", "train.val_interval=1", "-o", "train.lr_boundaries=[1]"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    run_tsn("prepare", "demo", "demo", "--num-classes", "3", "--videos-per-class", "8", "--frames", "12", cwd=root,
            check=True)
    run_tsn("prepare", "ucf101", "demo", "--split", "1", cwd=root, check=True)
    train = run_tsn("train", "--config", REPO / "configs/tsn_demo.yaml", *TINY, "--output", "out", "--json", cwd=root,
                    check=True)
    return root, json.loads(train.stdout)


def test_prepare_wrote_the_lists(chain):
    root, _ = chain
    train_lines = (root / "demo/ucf101_train_split_1_videos.txt").read_text().splitlines()
    val_lines = (root / "demo/ucf101_val_split_1_videos.txt").read_text().splitlines()
    assert len(train_lines) == 12 and len(val_lines) == 12
    assert all(ln.split()[0].endswith(".avi") and ln.split()[1] in {"0", "1", "2"} for ln in train_lines + val_lines)


def test_train_outputs(chain):
    root, summary = chain
    out = root / "out"
    assert summary["epochs_done"] == 2 and not summary["interrupted"]
    for name in ["TSN_epoch_00002.pdparams", "TSN_epoch_00002.pdopt", "TSN_best.pdparams", "config.yaml",
                 "label_names.txt", "metrics.jsonl"]:
        assert (out / name).is_file(), name
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all("val_top1" in r for r in rows)
    assert (out / "label_names.txt").read_text().splitlines()[0] == "0 RedDisc"


def test_eval_finds_settings_beside_the_weights(chain):
    root, summary = chain
    proc = run_tsn("eval", "--weights", "out/TSN_best.pdparams", "--json", "--output", "evalout", cwd=root, check=True)
    doc = json.loads(proc.stdout)
    assert doc["num_videos"] == 12 and doc["unreadable"] == []
    assert {c["label"] for c in doc["per_class"]} == {"RedDisc", "GreenSquare", "BlueTriangle"}
    # Same protocol as the trainer's validation of the best epoch: the same top-1.
    assert doc["top1"] == pytest.approx(summary["best_top1"], abs=1e-6)
    with open(root / "evalout/predictions.csv") as fh:
        preds = list(csv.DictReader(fh))
    assert len(preds) == 12


def test_export_and_predict_agree_with_weights(chain):
    root, _ = chain
    exp = run_tsn("export", "--weights", "out/TSN_best.pdparams", "--output", "exported", "--json", cwd=root,
                  check=True)
    doc = json.loads(exp.stdout)
    assert doc["max_abs_diff"] <= 1e-4
    assert (root / "exported/tsn.yaml").is_file()
    by_model = run_tsn("predict", "demo/example.avi", "--model", "exported", "--json", "--all-scores", cwd=root,
                       check=True)
    by_weights = run_tsn("predict", "demo/example.avi", "--weights", "out/TSN_best.pdparams", "--json", "--all-scores",
                         cwd=root, check=True)
    by_model, by_weights = json.loads(by_model.stdout), json.loads(by_weights.stdout)
    assert len(by_model) == 1 and by_model[0]["path"] == "demo/example.avi"
    assert len(by_model[0]["top_k"]) == 3
    assert by_model[0]["top_k"][0]["class_id"] == by_weights[0]["top_k"][0]["class_id"]
    assert max(abs(a - b) for a, b in zip(by_model[0]["scores"], by_weights[0]["scores"], strict=True)) < 1e-4
    assert sum(by_model[0]["scores"]) == pytest.approx(1.0, abs=1e-5)

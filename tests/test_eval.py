"""Eval engine: a model with constructed weights gives the designed result; view protocols match a direct
forward pass; chunked == unchunked; unreadable videos are reported, never replaced; 1-view / 10-crop shapes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests import helpers_eval as H


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    case = H.make_case(tmp_path_factory.mktemp("evaldata"))
    case["cfg"] = H.load_cfg(case["cfg_dict"])
    return case


def _model(setup):
    from tsn_cli.model.checkpoint import load_weights

    m = H.build_model(seed=99)  # different init: everything must come from the checkpoint
    load_weights(m, setup["weights"])
    return m


def test_known_result_on_constructed_weights(setup):
    from tsn_cli.engine.evaluate import evaluate

    res = evaluate(setup["cfg"], setup["weights"])
    assert res.paths == setup["paths"]  # list order, nothing dropped
    np.testing.assert_array_equal(res.labels, H.LABELS)
    np.testing.assert_array_equal(res.predictions, H.PREDS)
    np.testing.assert_array_equal(res.confusion(), H.CONFUSION)
    s = res.summary()
    assert s["top1"] == pytest.approx(8 / 11)
    assert s["top5"] == 1.0  # 3 classes: top-5 is clipped to top-3
    assert s["mean_class_accuracy"] == pytest.approx(0.75)
    assert [c["accuracy"] for c in s["per_class"]] == pytest.approx([1.0, 0.75, 0.5])
    assert [c["label"] for c in s["per_class"]] == setup["names"]  # class names from the label list
    assert [c["count"] for c in s["per_class"]] == [3, 4, 4]
    assert s["num_videos"] == 11 and s["unreadable"] == []
    assert s["protocol"]["seg_num"] == H.SEG and s["protocol"]["crops"] == 1
    # and the logits are the direct forward pass of the shared test-view path
    np.testing.assert_allclose(res.scores, H.reference_scores(_model(setup), setup["paths"]), atol=1e-4)


def test_input_shapes_1_view_and_10_crop(setup):
    from tsn_cli.data.lists import read_list
    from tsn_cli.engine import build

    recs = read_list(setup["list"], fmt="video").records
    one = build.eval_dataset(setup["cfg"], recs)
    assert one[0][0].shape == (H.SEG, 3, H.TARGET, H.TARGET)
    ten = build.eval_dataset(setup["cfg"], recs, seg_num=5, crops=10)
    clip, label, index, ok = ten[4]
    assert clip.shape == (50, 3, H.TARGET, H.TARGET) and int(ok) == 1 and int(index) == 4 and int(label) == 1


@pytest.mark.parametrize("average", ["logits", "scores"])
def test_ten_crop_matches_direct_forward_and_chunking_is_exact(setup, average):
    from tsn_cli.engine.evaluate import evaluate

    few = setup["paths"][:1] + setup["paths"][4:5]
    lst = H.write_list(setup["root"] / f"two_{average}.list", few, [0, 1])
    kw = dict(seg_num=3, crops=10, average=average)
    chunked = evaluate(setup["cfg"], setup["weights"], lst, max_views_per_batch=7, **kw)  # 30 views in 5 chunks
    whole = evaluate(setup["cfg"], setup["weights"], lst, max_views_per_batch=1000, **kw)
    np.testing.assert_allclose(chunked.scores, whole.scores, atol=1e-5, rtol=1e-5)
    ref = H.reference_scores(_model(setup), few, seg_num=3, crops=10, average=average)
    np.testing.assert_allclose(whole.scores, ref, atol=1e-4, rtol=1e-4)
    if average == "scores":
        np.testing.assert_allclose(whole.scores.sum(1), 1.0, atol=1e-5)


def test_three_crop_protocol_runs(setup):
    from tsn_cli.engine.evaluate import evaluate

    lst = H.write_list(setup["root"] / "one.list", setup["paths"][:1], [0])
    res = evaluate(setup["cfg"], setup["weights"], lst, seg_num=2, crops=3)
    assert res.protocol["crops"] == 3 and res.scores.shape == (1, 3)
    np.testing.assert_allclose(res.scores, H.reference_scores(_model(setup), setup["paths"][:1], crops=3), atol=1e-4)


def test_corrupt_video_is_reported_not_replaced(setup):
    from tsn_cli.engine.evaluate import evaluate

    bad = H.corrupt_video(setup["root"] / "v_Broken_g01_c01.avi")
    missing = setup["root"] / "gone.avi"
    paths = setup["paths"][:2] + [str(bad)] + setup["paths"][2:] + [str(missing)]
    labels = setup["labels"][:2] + [1] + setup["labels"][2:] + [2]
    lst = H.write_list(setup["root"] / "with_bad.list", paths, labels)
    res = evaluate(setup["cfg"], setup["weights"], lst)
    s = res.summary()
    assert [u["path"] for u in s["unreadable"]] == [str(bad), str(missing)]
    assert all(u["reason"] and "not reproducible" not in u["reason"] for u in s["unreadable"])
    assert "exist" in s["unreadable"][1]["reason"].lower() or "not found" in s["unreadable"][1]["reason"].lower()
    # the readable ones are scored exactly as before (nothing substituted for the bad rows)
    assert res.paths == setup["paths"]
    np.testing.assert_array_equal(res.predictions, H.PREDS)
    assert s["num_videos"] == 11 and s["top1"] == pytest.approx(8 / 11)


def test_all_unreadable_gives_empty_result(setup):
    from tsn_cli.engine.evaluate import evaluate, save_scores, write_reports

    bad = H.corrupt_video(setup["root"] / "only_bad.avi")
    lst = H.write_list(setup["root"] / "only_bad.list", [str(bad)], [0])
    res = evaluate(setup["cfg"], setup["weights"], lst)
    s = res.summary()
    assert s["num_videos"] == 0 and len(s["unreadable"]) == 1
    assert s["top1"] is None and s["mean_class_accuracy"] is None  # nothing scored: no number that reads as one
    out = setup["root"] / "empty_reports"
    write_reports(res, out)
    save_scores(res, out / "s.npz")
    assert np.load(out / "s.npz")["scores"].shape == (0, 3)
    shutil.rmtree(out)

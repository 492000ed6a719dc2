"""`tsn eval --model`: an exported model scores a list like its checkpoint does (same JSON schema, per-video scores
within 1e-4, same top-1) on paddle.inference, ONNX Runtime and OpenVINO; unreadable videos, bad labels and usage
errors behave as in `tsn eval --weights`; `--backend auto` follows its documented rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tests import helpers_eval as H
from tests.helpers_cli import run_tsn


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The constructed eval case (known confusion matrix) and its export with ONNX."""
    c = H.make_case(tmp_path_factory.mktemp("evalmodel"))
    c["cfg"] = H.write_config(c["root"] / "tiny.yaml", c["cfg_dict"])
    c["export"] = c["root"] / "export"
    p = run_tsn("export", "--weights", c["weights"], "--config", c["cfg"], "--output", c["export"], "--onnx",
                cwd=c["root"])
    assert p.returncode == 0, p.stderr
    bad = H.corrupt_video(c["root"] / "v_Corrupt_g09_c01.avi")
    c["bad_list"] = H.write_list(c["root"] / "bad.list", [c["paths"][0], str(bad), *c["paths"][1:]],
                                 [0, 2, *c["labels"][1:]])
    return c


def _eval(case, *args, tag):
    """Run `tsn eval ... --json --save-scores` on the list with a corrupt video; (summary, scores npz)."""
    npz = case["root"] / f"{tag}.npz"
    p = run_tsn("eval", *args, "--list", case["bad_list"], "--json", "--save-scores", npz, cwd=case["root"])
    assert p.returncode == 1, p.stdout + p.stderr  # the corrupt video: listed, exit 1, the rest scored
    assert "Traceback" not in p.stderr
    return json.loads(p.stdout), np.load(npz)


def test_exported_model_scores_like_dygraph_on_every_backend(case):
    ref, zr = _eval(case, "--weights", case["weights"], "--config", case["cfg"], tag="dygraph")
    assert ref["top1"] == pytest.approx(8 / 11) and ref["backend"] == "dygraph" and ref["model"] is None
    for backend in ("paddle", "onnxruntime", "openvino"):
        s, z = _eval(case, "--model", case["export"], "--backend", backend, tag=backend)
        assert set(s) == set(ref), backend  # the JSON schema of `tsn eval --weights`
        assert s["model"] == str(case["export"]) and s["weights"] is None
        assert s["backend"] == backend and s["precision"] == "fp32"
        for key in ("top1", "top5", "mean_class_accuracy", "num_videos", "per_class", "list"):
            assert s[key] == ref[key], (backend, key)
        assert [u["path"] for u in s["unreadable"]] == [u["path"] for u in ref["unreadable"]]
        assert s["unreadable"][0]["line"] == 2 and s["unreadable"][0]["reason"]
        assert s["protocol"]["seg_num"] == ref["protocol"]["seg_num"] == H.SEG
        assert s["protocol"]["crops"] == 1 and s["protocol"]["average"] == "logits"
        np.testing.assert_array_equal(z["paths"], zr["paths"])
        np.testing.assert_array_equal(z["indices"], zr["indices"])
        np.testing.assert_allclose(z["scores"], zr["scores"], atol=1e-4, rtol=0)
        np.testing.assert_array_equal(z["scores"].argmax(1), H.PREDS)


def test_three_crops_mean_of_scores_and_reports(case):
    """Protocol flags override tsn.yaml: 3 crops averaged as softmax scores give the dygraph eval's numbers."""
    args = ["--seg-num", "3", "--crops", "3", "--average", "scores", "--list", case["list"], "--json"]
    pw = run_tsn("eval", "--weights", case["weights"], "--config", case["cfg"], *args,
                 "--save-scores", case["root"] / "w3.npz", cwd=case["root"])
    out = case["root"] / "reports"
    pm = run_tsn("eval", "--model", case["export"], "--backend", "onnxruntime", *args, "--output", out,
                 "--save-scores", case["root"] / "m3.npz", cwd=case["root"])
    assert pw.returncode == 0 and pm.returncode == 0, pw.stderr + pm.stderr
    sw, sm = json.loads(pw.stdout), json.loads(pm.stdout)
    assert sm["protocol"]["crops"] == 3 and sm["protocol"]["seg_num"] == 3 and sm["protocol"]["average"] == "scores"
    assert sm["top1"] == sw["top1"] and sm["per_class"] == sw["per_class"]
    zw, zm = np.load(case["root"] / "w3.npz"), np.load(case["root"] / "m3.npz")
    np.testing.assert_allclose(zm["scores"], zw["scores"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(zm["scores"].sum(1), 1.0, atol=1e-5)  # mean of softmax: a distribution
    assert {"confusion_matrix.csv", "confusion_matrix.png", "predictions.csv"} <= {p.name for p in out.iterdir()}


def test_table_names_model_and_backend(case):
    p = run_tsn("eval", "--model", case["export"], "--list", case["list"], "--backend", "openvino", cwd=case["root"])
    assert p.returncode == 0, p.stderr
    assert "0.7273" in p.stdout and "(openvino, fp32)" in p.stdout and "export" in p.stdout


def test_usage_errors_exit_2(case):
    both = run_tsn("eval", "--model", case["export"], "--weights", case["weights"], "--list", case["list"])
    assert both.returncode == 2 and "exactly one of --weights" in both.stderr
    lst = H.write_list(case["root"] / "other.list", case["paths"][:2], [0, 7])  # class 7: another dataset's list
    p = run_tsn("eval", "--model", case["export"], "--list", lst)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "other.list:2" in p.stderr and "7" in p.stderr
    p = run_tsn("eval", "--model", case["export"], "--list", case["list"], "--backend", "tensorflow")
    assert p.returncode == 2 and "--backend" in p.stderr and "openvino" in p.stderr
    p = run_tsn("eval", "--model", case["export"], "--list", case["list"], "--backend", "onnxruntime",
                "--precision", "int8")
    assert p.returncode == 2 and "TSN.int8.onnx" in p.stderr and "--int8" in p.stderr
    p = run_tsn("eval", "--weights", case["weights"], "--config", case["cfg"], "--backend", "openvino")
    assert p.returncode == 2 and "only with --model" in p.stderr


def test_backend_auto_follows_the_measurement_for_this_cpu(case, tmp_path):
    """auto: the fastest backend measured at export on THIS CPU model; without one, the static order."""
    import shutil

    from tsn_cli.deploy.engines import STATIC_ORDER, cpu_name

    exp = tmp_path / "export"
    shutil.copytree(case["export"], exp)
    meta = yaml.safe_load((exp / "tsn.yaml").read_text())
    assert set(meta["benchmark"]["frames_per_s"]["fp32"]) == {"paddle", "onnxruntime", "openvino"}  # export measured

    def auto(cpu, fps):
        meta["benchmark"] = {"cpu": cpu, "views": 10, "frames_per_s": {"fp32": fps}}
        (exp / "tsn.yaml").write_text(yaml.safe_dump(meta))
        p = run_tsn("eval", "--model", exp, "--list", case["list"], "--backend", "auto", "--json")
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)["backend"], p.stderr

    fps = {"paddle": 20.0, "onnxruntime": 30.0, "openvino": 25.0}
    assert auto(cpu_name(), fps)[0] == "onnxruntime"
    assert auto(cpu_name(), {**fps, "paddle": 40.0})[0] == "paddle"
    backend, err = auto("Another CPU", fps)  # measured elsewhere: not trusted here
    assert backend == STATIC_ORDER[0] and "no measurement for this CPU" in err

"""`tsn export --int8`: a calibrated int8 ONNX model beside fp32, recorded in tsn.yaml, scored against fp32 at
export; `tsn eval --model --precision int8` (ONNX Runtime and OpenVINO) keeps the eval JSON schema and stays within
2 points of fp32 top-1; `tsn predict --precision int8` runs it."""

from __future__ import annotations

import json

import pytest
import yaml

from tests import helpers_eval as H
from tests.helpers_cli import run_tsn


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The constructed eval case exported with --int8, calibrated on 8 clips of its list; (case, export JSON)."""
    c = H.make_case(tmp_path_factory.mktemp("int8"))
    c["cfg"] = H.write_config(c["root"] / "tiny.yaml", c["cfg_dict"])
    c["export"] = c["root"] / "export"
    p = run_tsn("export", "--weights", c["weights"], "--config", c["cfg"], "--output", c["export"], "--int8",
                "--calib-list", c["list"], "--calib-size", "8", "--json", cwd=c["root"])
    assert p.returncode == 0, p.stderr
    return c, json.loads(p.stdout)


def test_export_writes_and_records_int8(exported):
    c, doc = exported
    names = {p.split("/")[-1] for p in doc["files"]}
    assert {"TSN.onnx", "TSN.int8.onnx", "tsn.yaml"} <= names
    rec = doc["int8"]
    meta = yaml.safe_load((c["export"] / "tsn.yaml").read_text())
    assert meta["precisions"]["int8"] == rec
    assert rec["file"] == "TSN.int8.onnx" and rec["calibration"]["size"] == 8 and rec["calibration"]["clips"] == 8
    assert rec["calibration"]["list"] == str(c["list"]) and rec["eval"]["list"] == str(c["list"])  # default
    ev = rec["eval"]
    assert ev["fp32"]["top1"] == pytest.approx(8 / 11)  # the designed result, on the deployed fp32 file
    assert abs(ev["int8"]["top1"] - ev["fp32"]["top1"]) <= 0.02
    assert ev["fp32"]["num_videos"] == ev["int8"]["num_videos"] == 11
    assert ev["fp32"]["frames_per_s"] > 0 and ev["int8"]["frames_per_s"] > 0
    assert set(meta["benchmark"]["frames_per_s"]) == {"fp32", "int8"}
    assert set(meta["benchmark"]["frames_per_s"]["int8"]) == {"onnxruntime", "openvino"}  # paddle: fp32 only
    assert rec["size_mb"]["int8"] < rec["size_mb"]["fp32"] / 2  # int8 weights: a quarter, plus QDQ nodes


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_eval_int8_keeps_schema_and_accuracy(exported, backend):
    c, _ = exported
    f = run_tsn("eval", "--model", c["export"], "--list", c["list"], "--backend", backend, "--json")
    q = run_tsn("eval", "--model", c["export"], "--list", c["list"], "--backend", backend, "--precision", "int8",
                "--json")
    assert f.returncode == 0 and q.returncode == 0, f.stderr + q.stderr
    sf, sq = json.loads(f.stdout), json.loads(q.stdout)
    assert set(sq) == set(sf) and sq["precision"] == "int8" and sq["backend"] == backend
    assert abs(sq["top1"] - sf["top1"]) <= 0.02 and sq["num_videos"] == 11


def test_predict_int8_and_usage_errors(exported):
    c, _ = exported
    p = run_tsn("predict", c["paths"][0], "--model", c["export"], "--backend", "openvino", "--precision", "int8",
                "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0]["top_k"][0]["label"] in c["names"]
    p = run_tsn("predict", *c["paths"][:2], "--model", c["export"], "--backend", "onnxruntime", "--precision", "int8",
                "--benchmark", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["backend"] == "onnxruntime" and doc["precision"] == "int8" and doc["inference_frames_per_s"] > 0
    assert len(doc["predictions"]) == 2 and set(doc["timings_ms"]) >= {"inference"}
    p = run_tsn("predict", c["paths"][0], "--model", c["export"], "--precision", "int8")  # paddle cannot run it
    assert p.returncode == 2 and "--backend onnxruntime or openvino" in p.stderr
    p = run_tsn("export", "--weights", c["weights"], "--config", c["cfg"], "--output", c["root"] / "x", "--int8")
    assert p.returncode == 2 and "--calib-list" in p.stderr and not (c["root"] / "x").exists()

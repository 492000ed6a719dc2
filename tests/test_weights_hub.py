"""Pretrained weights by name or URL (issue 14, item 4): download cache, resume, verification, sha256, offline.

A local HTTP server on 127.0.0.1 (tests/helpers_http.py) plays the weights host; TSN_WEIGHTS_MIRROR points the
named entries at it and TSN_CACHE at a temporary folder. The built-in names expect ResNet-50 files (~100 MB), so
the files served are ResNet-18 ones (float16, ~22 MB): a bare URL is checked against the architecture its own
tensors describe, names registered through TSN_WEIGHTS_TABLE are checked against theirs, and the built-in names
are shown to refuse a file that is not the ResNet-50 they name. `state_shapes` (what the check compares with) is
itself checked against PaddleVideo's own key/shape lists.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers_cli import run_tsn
from tests.helpers_http import WeightsServer, closed_port

WIDE = {"COLUMNS": "1000"}
K400 = "https://videotag.bj.bcebos.com/PaddleVideo-release2.2/TSN_k400.pdparams"
GOLDEN = Path(__file__).parent / "golden"


def _blob(state: dict) -> bytes:
    import tempfile

    from tsn_cli.model.checkpoint import save_state

    with tempfile.TemporaryDirectory() as d:
        p = save_state(state, Path(d) / "w.pdparams")
        return p.read_bytes()


@pytest.fixture(scope="module")
def blobs():
    """ResNet-18 TSN (4 classes) and an ImageNet-style ResNet-18 backbone (bare keys + its own classifier)."""
    from tests.helpers_model import golden_weights
    from tsn_cli.model.arch import state_shapes

    tsn = {k: v.astype(np.float16) for k, v in golden_weights(state_shapes(18, 4)).items()}
    backbone = {k[len("backbone."):]: v for k, v in tsn.items() if k.startswith("backbone.")}
    backbone["out.weight"] = np.zeros((512, 10), np.float16)
    backbone["out.bias"] = np.zeros(10, np.float16)
    return {"tsn18.pdparams": _blob(tsn), "r18_imagenet.pdparams": _blob(backbone)}


@pytest.fixture
def srv(blobs):
    with WeightsServer() as s:
        s.files.update(blobs)
        yield s


@pytest.fixture
def env(tmp_path, srv):
    table = tmp_path / "table.json"
    table.write_text(json.dumps({
        "tiny18": {"url": "https://weights.example.invalid/w/tsn18.pdparams", "depth": 18, "num_classes": 4},
        "r18_imagenet": {"url": "https://weights.example.invalid/w/r18_imagenet.pdparams", "depth": 18,
                         "num_classes": None},
    }))
    return {**WIDE, "TSN_CACHE": str(tmp_path / "cache"), "TSN_WEIGHTS_MIRROR": srv.url,
            "TSN_WEIGHTS_TABLE": str(table)}


def _cached(env, srv, name="tsn18.pdparams") -> Path:
    return Path(env["TSN_CACHE"]) / f"127.0.0.1_{srv.port}" / name


def _error_line(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _info(source, env, *more):
    return run_tsn("weights", "info", source, *more, env=env)


def test_state_shapes_are_paddlevideos():
    """The layout downloads are checked against is PaddleVideo's model.state_dict(), key for key, shape for shape."""
    from tsn_cli.model.arch import state_shapes

    for depth in (50, 101, 152):
        gold = json.loads((GOLDEN / f"pv_keys_r{depth}.json").read_text())
        assert list(state_shapes(depth, gold["num_classes"]).items()) == [(k, tuple(s)) for k, s in gold["keys"]]
    assert not any(k.startswith("head.") for k in state_shapes(50))


def test_url_download_then_cache_hit_offline(srv, env, blobs):
    url = f"{srv.url}/tsn18.pdparams"
    p = _info(url, env, "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert (doc["depth"], doc["num_classes"], doc["tensors"], doc["fits"]) == (18, 4, 107, True)
    assert doc["load_report"].startswith("loaded 107/107 tensors; skipped 0 for shape; missing 0; unexpected 0")
    cached = _cached(env, srv)
    assert doc["path"] == str(cached) and cached.read_bytes() == blobs["tsn18.pdparams"]
    digest = hashlib.sha256(blobs["tsn18.pdparams"]).hexdigest()
    assert doc["sha256"] == digest and cached.with_name("tsn18.pdparams.sha256").read_text().split()[0] == digest
    assert not cached.with_name("tsn18.pdparams.part").exists()
    assert "downloaded and verified" in p.stderr
    srv.stop()  # no network: the cache is used, nothing is fetched
    p = _info(url, env, "--json")
    assert p.returncode == 0, p.stderr
    assert "using the cached" in p.stderr and json.loads(p.stdout)["sha256"] == digest
    assert len(srv.log) == 1


def test_dropped_connection_is_continued_with_range(srv, env, blobs):
    size = len(blobs["tsn18.pdparams"])
    srv.mode["tsn18.pdparams"] = "drop_once"
    p = _info(f"{srv.url}/tsn18.pdparams", env)
    assert p.returncode == 0, p.stderr
    assert srv.log == [("tsn18.pdparams", None), ("tsn18.pdparams", f"bytes={size // 2}-")]
    assert _cached(env, srv).read_bytes() == blobs["tsn18.pdparams"]


def test_broken_download_is_kept_and_continued_next_run(srv, env, blobs):
    url = f"{srv.url}/tsn18.pdparams"
    srv.mode["tsn18.pdparams"] = "drop"
    p = _info(url, env)
    assert p.returncode == 2
    line = _error_line(p)
    part = _cached(env, srv).with_name("tsn18.pdparams.part")
    assert f"download of {url} broke off 3 times" in line and str(part) in line and "run the command again" in line
    have = part.stat().st_size
    assert 0 < have < len(blobs["tsn18.pdparams"]) and not _cached(env, srv).exists()
    srv.mode["tsn18.pdparams"] = "ok"
    p = _info(url, env)
    assert p.returncode == 0, p.stderr
    assert f"continuing after {have} bytes" in p.stderr and srv.log[-1] == ("tsn18.pdparams", f"bytes={have}-")
    assert _cached(env, srv).read_bytes() == blobs["tsn18.pdparams"] and not part.exists()


def test_server_ignoring_range_restarts_the_file(srv, env, blobs):
    cached = _cached(env, srv)
    cached.parent.mkdir(parents=True)
    cached.with_name("tsn18.pdparams.part").write_bytes(b"x" * 1000)  # not even a prefix of the file
    srv.mode["tsn18.pdparams"] = "norange"
    p = _info(f"{srv.url}/tsn18.pdparams", env)
    assert p.returncode == 0, p.stderr
    assert srv.log == [("tsn18.pdparams", "bytes=1000-")]  # asked to continue, got the whole file with 200
    assert cached.read_bytes() == blobs["tsn18.pdparams"]


def test_corrupted_body_is_refused_and_deleted(srv, env):
    url = f"{srv.url}/tsn18.pdparams"
    srv.mode["tsn18.pdparams"] = "html"
    p = _info(url, env)
    assert p.returncode == 2
    line = _error_line(p)
    cached = _cached(env, srv)
    assert line.startswith(f"error: {url} (downloaded for {cached}): ") and "not a checkpoint" in line
    assert "deleted" in line
    assert not cached.exists() and not cached.with_name("tsn18.pdparams.part").exists()


def test_404_names_the_url(srv, env):
    url = f"{srv.url}/nothing_here.pdparams"
    p = _info(url, env)
    assert p.returncode == 2
    line = _error_line(p)
    assert f"cannot download {url}: HTTP 404" in line and "check the URL" in line


def test_offline_names_url_and_cache_path_then_hand_placed_file_is_checked(env, blobs):
    env = {**env, "TSN_WEIGHTS_MIRROR": f"http://127.0.0.1:{closed_port()}/mirror"}
    p = _info("tsn_k400", env)
    assert p.returncode == 2
    line = _error_line(p)
    where = Path(env["TSN_CACHE"]) / "videotag.bj.bcebos.com" / "PaddleVideo-release2.2" / "TSN_k400.pdparams"
    assert f"cannot download {env['TSN_WEIGHTS_MIRROR']}/TSN_k400.pdparams (Connection refused)" in line
    assert f"put the file at {where}" in line
    # a file put there by hand is checked against the architecture the name stands for before its first use
    assert not where.with_name("TSN_k400.pdparams.part").exists()
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_bytes(blobs["tsn18.pdparams"])
    p = _info("tsn_k400", env)
    assert p.returncode == 2
    line = _error_line(p)
    assert f"{where}: not a TSN ResNet-50 with 400 classes" in line
    assert "backbone.res2a.conv0._conv.weight is [64, 64, 3, 3] in the file, [64, 64, 1, 1]" in line
    assert "the file is ResNet-18, 4 classes" in line


def test_builtin_name_through_mirror_refuses_another_architecture(srv, env, blobs):
    srv.files["TSN_k400.pdparams"] = blobs["tsn18.pdparams"]
    p = _info("tsn_k400", env)
    assert p.returncode == 2
    line = _error_line(p)
    where = Path(env["TSN_CACHE"]) / "videotag.bj.bcebos.com" / "PaddleVideo-release2.2" / "TSN_k400.pdparams"
    assert line.startswith(f"error: {srv.url}/TSN_k400.pdparams (downloaded for {where}): not a TSN ResNet-50")
    assert not where.exists() and not where.with_name("TSN_k400.pdparams.part").exists()


def test_sha256_pinned_recorded_and_checked(srv, env, blobs, tmp_path):
    url = f"{srv.url}/tsn18.pdparams"
    good = hashlib.sha256(blobs["tsn18.pdparams"]).hexdigest()
    p = _info(url, env, "--sha256", "0" * 64)
    assert p.returncode == 2 and f"sha256 is {good}, expected {'0' * 64}" in _error_line(p)
    assert not _cached(env, srv).exists()
    srv.mode["tsn18.pdparams"] = "flip"  # a body that still loads (its data changed): only the checksum sees it
    p = _info(url, env, "--sha256", good.upper())
    assert p.returncode == 2 and "a corrupted or different file" in _error_line(p)
    srv.mode["tsn18.pdparams"] = "ok"
    assert _info(url, env, "--sha256", good).returncode == 0
    cached = _cached(env, srv)
    data = bytearray(cached.read_bytes())
    data[-100] ^= 0x01  # the cache file changes behind our back
    cached.write_bytes(bytes(data))
    p = _info(url, env)
    assert p.returncode == 2
    line = _error_line(p)
    assert f"{cached}: the file changed since it was downloaded" in line and f"recorded {good}" in line
    assert "64 hex digits" in _error_line(_info(url, env, "--sha256", "abc"))
    local = tmp_path / "local.pdparams"
    local.write_bytes(blobs["tsn18.pdparams"])
    assert _info(local, env, "--sha256", good).returncode == 0
    assert "--sha256 wants" in _error_line(_info(local, env, "--sha256", "f" * 64))


def test_weights_commands_do_not_import_paddle(srv, env, tmp_path, blobs):
    import os
    import subprocess
    import sys

    local = tmp_path / "w.pdparams"
    local.write_bytes(blobs["tsn18.pdparams"])
    code = ("import sys; from tsn_cli.cli import app; from typer.testing import CliRunner; "
            f"r = CliRunner().invoke(app, ['weights', 'info', {str(local)!r}]); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(app, ['weights', 'list']); assert r.exit_code == 0, r.output; "
            "print('paddle' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stdout + out.stderr


def test_python_api_takes_a_name(srv, env):
    """tsn_cli.api resolves weights like the CLI: a name is fetched into the cache and its architecture used."""
    import os
    import subprocess
    import sys

    code = ("import tsn_cli as t; c = t.load_config(weights='tiny18', on_message=lambda m: None); "
            "print(c.model.depth, c.model.num_classes)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    assert out.returncode == 0 and out.stdout.split() == ["18", "4"], out.stdout + out.stderr
    assert srv.log == [("tsn18.pdparams", None)]


def test_list_shows_names_urls_and_cache(srv, env):
    bare = {k: v for k, v in env.items() if k not in ("TSN_WEIGHTS_MIRROR", "TSN_WEIGHTS_TABLE")}
    p = run_tsn("weights", "list", "--json", env=bare)
    assert p.returncode == 0, p.stderr
    rows = {r["name"]: r for r in json.loads(p.stdout)["weights"]}
    assert rows["resnet50"]["url"] == "https://videotag.bj.bcebos.com/PaddleVideo/PretrainModel/ResNet50_pretrain.pdparams"
    assert rows["tsn_k400"]["url"] == K400 and rows["tsn_k400"]["seg_num"] == 3
    assert rows["tsn_k400_8"]["url"] == K400.replace("TSN_k400", "TSN_k400_8") and rows["tsn_k400_8"]["seg_num"] == 8
    assert rows["resnet50"]["architecture"] == "ResNet-50 backbone (no head)"
    assert rows["tsn_k400"]["architecture"] == "TSN ResNet-50, 400 classes, 3 segments"
    assert not any(r["cached"] for r in rows.values())
    assert _info("tiny18", env).returncode == 0  # a name from TSN_WEIGHTS_TABLE, fetched through the mirror
    assert srv.log == [("tsn18.pdparams", None)]
    p = run_tsn("weights", "list", "--json", env=env)
    rows = {r["name"]: r for r in json.loads(p.stdout)["weights"]}
    assert rows["tiny18"]["cached"] and rows["tiny18"]["size"] == len(srv.files["tsn18.pdparams"])
    assert rows["tiny18"]["path"] == str(Path(env["TSN_CACHE"]) / "weights.example.invalid" / "w" / "tsn18.pdparams")
    assert rows["tsn_k400"]["url"] == f"{srv.url}/TSN_k400.pdparams" and not rows["tsn_k400"]["cached"]
    p = run_tsn("weights", "list", env=env)
    assert p.returncode == 0 and "tiny18" in p.stdout and f"{srv.url}/TSN_k400.pdparams" in p.stdout


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from tests.helpers_train import make_tiny_data

    return make_tiny_data(tmp_path_factory.mktemp("data"))


def test_train_pretrained_by_name_and_none(srv, env, tiny_data, tmp_path):
    import yaml

    from tests.helpers_train import write_tiny_config

    cfg = write_tiny_config(tmp_path / "cfg.yaml", tiny_data, tmp_path / "out")
    p = run_tsn("train", "--config", cfg, "--pretrained", "r18_imagenet", "--dry-run", env=env)
    assert p.returncode == 0, p.stderr
    cached = Path(env["TSN_CACHE"]) / "weights.example.invalid" / "w" / "r18_imagenet.pdparams"
    assert f"pretrained {cached}: loaded 105/105 backbone tensors" in p.stderr.replace("\n", " ")
    assert srv.log == [("r18_imagenet.pdparams", None)]
    # a config naming a file that is not there: --pretrained none trains from scratch instead
    data = yaml.safe_load(cfg.read_text())
    data["model"]["pretrained"] = str(tmp_path / "missing.pdparams")
    cfg.write_text(yaml.safe_dump(data))
    p = run_tsn("train", "--config", cfg, "--dry-run", env=env)
    assert p.returncode == 2 and f"model.pretrained: file not found: {tmp_path / 'missing.pdparams'}" in _error_line(p)
    p = run_tsn("train", "--config", cfg, "--pretrained", "none", "--dry-run", env=env)
    assert p.returncode == 0, p.stderr
    assert "training from scratch" in p.stderr and "loaded" not in p.stderr
    p = run_tsn("train", "--config", cfg, "--pretrained", "resnet5", "--dry-run", env=env)
    assert p.returncode == 2 and "not a file, nor a known weights name: resnet50" in _error_line(p)
    p = run_tsn("train", "--config", cfg, "--pretrained", "r18_imagenet", "--weights", "tiny18", "--sha256", "0" * 64,
                "--dry-run", env=env)
    assert p.returncode == 2 and "--sha256 pins one file" in _error_line(p)
    data["model"]["pretrained"] = "none"  # the same from a config
    cfg.write_text(yaml.safe_dump(data))
    p = run_tsn("train", "--config", cfg, "--dry-run", env=env)
    assert p.returncode == 0 and "training from scratch" in p.stderr, p.stderr


def test_predict_with_weights_url(srv, env, tmp_path):
    from tests.helpers_deploy import write_clip

    clip = write_clip(tmp_path / "clip.avi")
    url = f"{srv.url}/tsn18.pdparams"
    p = run_tsn("predict", clip, "--weights", url, "--top-k", "2", "--json", env=env)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert len(doc[0]["top_k"]) == 2 and doc[0]["top_k"][0]["class_id"] in range(4)
    assert "ResNet-18, 4 classes read from the checkpoint" in p.stderr.replace("\n", " ")
    srv.stop()
    p = run_tsn("predict", clip, "--weights", url, "--json", env=env)  # second run: from the cache, offline
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0]["top_k"][0] == doc[0]["top_k"][0]

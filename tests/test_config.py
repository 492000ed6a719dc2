"""Config loading, overrides, flags and their one-line errors (exit code 2, no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers_cli import REPO
from tests.helpers_model import skeleton_state
from tsn_cli.config import RunConfig, load_config, with_values
from tsn_cli.errors import ConfigError

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_every_shipped_config_loads():
    names = {p.name for p in CONFIGS}
    assert {"tsn_ucf101_videos.yaml", "tsn_ucf101_frames.yaml", "tsn_k400_videos.yaml", "tsn_k400_frames.yaml",
            "tsn_demo.yaml"} <= names
    for p in CONFIGS:
        cfg = load_config(p)
        assert cfg.train.momentum == 0.9 and cfg.train.weight_decay == 1e-4


def test_recipe_matches_paddlevideo():
    k400 = load_config(REPO / "configs/tsn_k400_frames.yaml")
    assert (k400.model.depth, k400.model.num_classes, k400.model.seg_num, k400.model.dropout) == (50, 400, 3, 0.4)
    assert k400.data.format == "frames" and k400.data.frame_template == "img_{:05}.jpg"
    assert (k400.augment.short_side, k400.augment.target_size) == (256, 224)
    assert k400.augment.scales == [1.0, 0.875, 0.75, 0.66]
    assert k400.train.grad_clip == 40.0 and k400.train.lr == 0.01
    assert load_config(REPO / "configs/tsn_k400_videos.yaml").data.format == "video"
    ucf = load_config(REPO / "configs/tsn_ucf101_videos.yaml")
    assert ucf.model.num_classes == 101 and ucf.train.lr_boundaries is None  # 1/3 and 2/3 of the epochs


def test_overrides_are_typed():
    cfg = load_config(REPO / "configs/tsn_demo.yaml",
                      ["model.seg_num=7", "train.lr=0.1", "augment.scales=[1, 0.5]", "runtime.amp=bf16"])
    assert cfg.model.seg_num == 7 and isinstance(cfg.model.seg_num, int)
    assert cfg.train.lr == pytest.approx(0.1)
    assert cfg.augment.scales == [1.0, 0.5]
    assert cfg.runtime.amp == "bf16"


def test_overrides_validate_together():
    # Each alone breaks short_side >= target_size; together they are valid.
    cfg = load_config(None, ["augment.short_side=80", "augment.target_size=64"])
    assert (cfg.augment.short_side, cfg.augment.target_size) == (80, 64)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.segnum=3", "unknown key 'model.segnum' (did you mean model.seg_num?)"),
        ("train.epoch=3", "unknown key 'train.epoch' (did you mean train.epochs?)"),
        ("model.epochs=3", "unknown key 'model.epochs' (did you mean train.epochs?)"),
        ("model.colour=3", "unknown key 'model.colour' (allowed: model.depth, model.num_classes"),
        ("modle.depth=50", "unknown section 'modle' (did you mean model?)"),
        ("model.seg_num=abc", "model.seg_num"),
        ("model.depth=20", "must be one of 18, 34, 50, 101 or 152"),
        ("train.lr=-1", "train.lr"),
        ("runtime.device=tpu", "runtime.device"),
        ("model.seg_num", "expected section.key=value"),
        ("seg_num=3", "key must be section.key"),
    ],
)
def test_override_errors_name_the_key(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    msg = str(err.value)
    assert expected in msg and "\n" not in msg
    assert override.split("=")[0] in msg or "override" in msg


def test_file_errors(tmp_path):
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("model:\n  depht: 50\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'model.depht'"):
        load_config(bad_key)
    bad_type = tmp_path / "type.yaml"
    bad_type.write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"type.yaml: train.epochs"):
        load_config(bad_type)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: invalid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_python_tags_never_execute(tmp_path):
    evil = tmp_path / "evil.yaml"
    marker = tmp_path / "ran"
    evil.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(evil)
    assert not marker.exists()


def test_relative_paths_follow_the_config_file_when_needed(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.txt").write_text("a.avi 0\n")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("data:\n  train_list: lists/train.txt\n")
    cfg = load_config(cfg_file)
    assert Path(cfg.data.train_list) == tmp_path / "lists" / "train.txt"


def test_saved_config_round_trips(tmp_path):
    from tsn_cli.config import save_config

    cfg = load_config(REPO / "configs/tsn_demo.yaml", ["model.seg_num=5"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.model == cfg.model and again.augment == cfg.augment
    assert Path(again.data.train_list).is_absolute()
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["model"]["seg_num"] == 5


def test_with_values_names_the_option():
    with pytest.raises(ConfigError, match="option --seg-num: model.seg_num"):
        with_values(RunConfig(), {"model.seg_num": 0}, source="option --seg-num")
    # with the flag names known, the error leads with the flag and its allowed values
    with pytest.raises(ConfigError) as err:
        with_values(RunConfig(), {"eval.average": "mean", "eval.batch_size": 2}, names={"eval.average": "--average"})
    assert str(err.value) == "--average: must be one of 'logits' or 'scores', got 'mean' (eval.average)"


def test_missing_setting_names_the_flag_and_the_config_key():
    from tsn_cli.config import require_file

    with pytest.raises(ConfigError) as err:
        require_file(None, "data.train_list")
    msg = str(err.value)
    assert msg.startswith("no training list: give --train-list or set data.train_list in a --config file")
    assert "--config configs/tsn_demo.yaml" in msg and (REPO / "configs/tsn_demo.yaml").is_file()


def test_cli_flags_override_config_file():
    from tsn_cli.cli.common import build_config

    cfg = build_config(config=REPO / "configs/tsn_demo.yaml", overrides=["train.lr=0.2"], seg_num=7, lr=0.3, depth=34,
                       epochs=2, batch_size=3, workers=0, seed=9, device="cpu", target_size=64)
    got = (cfg.model.seg_num, cfg.train.lr, cfg.model.depth, cfg.train.epochs, cfg.train.batch_size)
    assert got == (7, 0.3, 34, 2, 3)
    assert (cfg.runtime.workers, cfg.runtime.seed, cfg.runtime.device) == (0, 9, "cpu")
    assert cfg.augment.target_size == 64 and cfg.augment.short_side >= 64


def test_one_flag_table_names_real_keys_and_each_flag():
    from tsn_cli.engine.runconfig import FLAG_KEYS, build_config

    keys = {k for k, _ in RunConfig().flat()}
    assert {key for key, _ in FLAG_KEYS.values()} <= keys
    # the flags train used to re-apply itself go through the table, each error under its own flag
    bad = [("amp", "fp8", "--amp"), ("amp_level", "O3", "--amp-level"), ("average", "mean", "--average"),
           ("eval_batch_size", 0, "--batch-size"), ("max_views_per_batch", 0, "--max-views-per-batch")]
    for name, value, flag in bad:
        with pytest.raises(ConfigError) as err:
            build_config(config=None, overrides=None, **{name: value})
        assert str(err.value).startswith(f"{flag}: ") and FLAG_KEYS[name][0] in str(err.value)
    cfg = build_config(config=None, overrides=None, amp="bf16", auto_scale_lr=True, eval_seg_num=25, seg_num=5)
    assert (cfg.runtime.amp, cfg.train.auto_scale_lr, cfg.eval.seg_num, cfg.model.seg_num) == ("bf16", True, 25, 5)
    with pytest.raises(TypeError, match="no flag named segnum"):
        build_config(config=None, overrides=None, segnum=3)


def test_test_seg_num_is_eval_else_model():
    assert RunConfig().test_seg_num == 3
    assert load_config(None, ["model.seg_num=7"]).test_seg_num == 7
    assert load_config(None, ["model.seg_num=7", "eval.seg_num=25"]).test_seg_num == 25


def test_weights_bring_their_config(tmp_path):
    from tsn_cli.cli.common import build_config
    from tsn_cli.config import save_config
    from tsn_cli.model.checkpoint import save_state

    saved = load_config(REPO / "configs/tsn_demo.yaml", ["model.num_classes=4", "model.depth=34"])
    save_config(saved, tmp_path / "config.yaml")
    save_state(skeleton_state(34, 4), tmp_path / "TSN_best.pdparams")
    cfg = build_config(config=None, overrides=None, weights=tmp_path / "TSN_best.pdparams")
    assert (cfg.model.num_classes, cfg.model.depth) == (4, 34)

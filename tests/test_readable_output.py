"""Output a person can read: help text intact, one-line errors that name the flag, tables without raw floats or
mid-word breaks at 120 columns, consistent counts, integer epoch ticks and a confusion matrix with a scale."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests import helpers_eval as H
from tests.helpers_cli import REPO, run_tsn
from tests.helpers_prepare import write_video

NARROW = {"COLUMNS": "120"}
RAW_FLOAT = re.compile(r"\d\.\d{6,}")  # 0.16666666666666666, 0.098545664: a repr, not a formatted number


def _lines(p) -> list[str]:
    return (p.stdout + p.stderr).splitlines()


# ------------------------------------------------------------------------------------------------ help


def test_export_help_shows_the_extra_in_brackets():
    p = run_tsn("export", "--help", env=NARROW)
    assert p.returncode == 0 and "pip install 'tsn-cli[onnx]'" in p.stdout


def test_no_help_text_loses_brackets_to_rich_markup():
    """Every command's and option's help renders to the text written (only the intended [bold] tags go)."""
    import typer
    from rich.text import Text

    from tsn_cli.cli import app

    def walk(cmd, name):
        yield name, cmd
        for sub, c in getattr(cmd, "commands", {}).items():
            yield from walk(c, f"{name} {sub}")

    lost = []
    for name, cmd in walk(typer.main.get_command(app), "tsn"):
        for what, text in [("doc", cmd.help or "")] + [(p.name, getattr(p, "help", None) or "") for p in cmd.params]:
            meant = re.sub(r"\\\[", "[", re.sub(r"\[(bold|/)\]", "", text))
            if Text.from_markup(text).plain != meant:
                lost.append(f"{name} {what}")
    assert lost == []


# ---------------------------------------------------------------------------------------------- errors


def _one_error_line(p) -> str:
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stdout == "" and len(p.stderr.splitlines()) == 1, p.stderr
    return p.stderr


def test_train_without_a_config_is_one_line_naming_the_flag_and_config(tmp_path):
    p = run_tsn("train", cwd=tmp_path, env=NARROW)
    line = _one_error_line(p)
    assert "--train-list" in line and "data.train_list" in line and "--config" in line
    assert "Run config" not in line


def test_missing_val_list_is_reported_before_any_table(tmp_path):
    (tmp_path / "train.txt").write_text("a.avi 0\n")
    p = run_tsn("train", "--train-list", "train.txt", "--val-list", "nope.txt", cwd=tmp_path, env=NARROW)
    assert "data.val_list: file not found: nope.txt" in _one_error_line(p)


def test_unknown_key_suggests_the_close_one(tmp_path):
    line = _one_error_line(run_tsn("train", "-o", "train.epoch=3", cwd=tmp_path, env=NARROW))
    assert "unknown key 'train.epoch' (did you mean train.epochs?)" in line and "allowed" not in line


def test_bad_flag_value_names_the_flag(tmp_path):
    weights = tmp_path / "w.pdparams"
    weights.write_bytes(b"not checked before the options")
    line = _one_error_line(run_tsn("eval", "--weights", weights, "--average", "mean", cwd=tmp_path, env=NARROW))
    assert "--average: must be one of 'logits' or 'scores', got 'mean'" in line
    line = _one_error_line(run_tsn("train", "--amp", "fp8", cwd=tmp_path, env=NARROW))
    assert line.strip() == "error: --amp: must be one of 'fp16' or 'bf16', got 'fp8' (runtime.amp)"


# ------------------------------------------------------------------------------------------------ eval


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    c = H.make_case(tmp_path_factory.mktemp("readable_eval"))
    c["cfg"] = H.write_config(c["root"] / "tiny.yaml", c["cfg_dict"])
    return c


def test_eval_table_is_formatted_and_fits_120_columns(case):
    p = run_tsn("eval", "--weights", case["weights"], "--config", case["cfg"], cwd=case["root"], env=NARROW)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].strip() == "Evaluation of test.list: 2 seg x 1 crop, 32 px, mean of logits"  # names the list
    assert all(len(ln) <= 120 for ln in lines)
    assert not RAW_FLOAT.search(p.stdout) and "None" not in p.stdout
    # per-class accuracy 1, 0.75, 0.5 (mean 0.75): only the class below the mean is listed
    worst = p.stdout[p.stdout.index("Worst classes"):]
    assert case["names"][2] in worst and case["names"][0] not in worst and case["names"][1] not in worst
    assert "0.5000" in worst


def test_no_worst_classes_when_every_class_is_right(case):
    perfect = H.construct_weights(case["paths"], case["root"] / "TSN_perfect.pdparams", preds=H.LABELS)
    p = run_tsn("eval", "--weights", perfect, "--config", case["cfg"], cwd=case["root"], env=NARROW)
    assert p.returncode == 0, p.stderr
    assert "1.0000" in p.stdout and "Worst classes" not in p.stdout


def test_confusion_figure_has_a_colour_scale_and_counts():
    from tsn_cli.engine.confusion import confusion_figure

    fig = confusion_figure(H.CONFUSION, ["a", "b", "c"])
    assert len(fig.axes) == 2  # the matrix and its colour bar
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == sorted(str(v) for v in H.CONFUSION.ravel() if v)
    big = confusion_figure(np.eye(31, dtype=int), [str(i) for i in range(31)])
    assert len(big.axes) == 2 and not big.axes[0].texts  # too many classes to write the counts


def test_curve_ticks_are_whole_epochs():
    from tsn_cli.engine.curves import curves_figure

    rows = [{"epoch": e, "loss": 1.0 / e, "top1": 0.2 * e, "lr": 0.01, "val_top1": 0.1 * e} for e in (1, 2, 3)]
    for ax in curves_figure(rows).axes:
        ticks = ax.get_xticks()
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


# --------------------------------------------------------------------------------------------- prepare


def test_prepare_check_counts_agree_and_paths_stay_whole(tmp_path):
    deep = tmp_path.joinpath(*["a_rather_long_folder_name_for_videos"] * 3)
    good = write_video(deep / "v_Alpha_g01_c01_with_a_long_file_name.avi", frames=6)
    empty = deep / "v_Beta_g01_c02_with_a_long_file_name_that_is_empty.avi"
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_bytes(b"")
    lst = tmp_path / "l.txt"
    lst.write_text(f"{good} 0\n{empty} 1\n{deep / 'v_Gone_g01_c03_missing_video.avi'} 1\nnot a valid line\n")
    p = run_tsn("prepare", "check", lst, "-j", "1", env=NARROW)
    assert p.returncode == 1, p.stderr
    out = p.stdout
    assert re.search(r"bad lines\s+│\s+1\b", out) and re.search(r"bad entries\s+│\s+2\b", out), out
    assert "Bad lines (1)" in out and "Bad entries (2)" in out and "(3)" not in out
    assert all(len(ln) <= 120 for ln in out.splitlines())
    for name in (empty.name, "v_Gone_g01_c03_missing_video.avi"):
        assert any(name in ln for ln in out.splitlines()), name  # the file name is never split over lines
    assert "videos/s" in p.stderr and "frames/s" not in p.stderr


# ---------------------------------------------------------------------------------------------- ui.fmt


@pytest.mark.parametrize("value, shown", [
    (0.16666666666666666, "0.1667"), (None, "-"), (0.098545664, "0.0985"), (1e-5, "1e-05"), (1.0, "1"),
    (11183814, "11,183,814"), (np.float32(0.5), "0.5"), ([12, 15], "12, 15"), (False, "false"), (0.0, "0"),
])
def test_table_cells_are_formatted(value, shown):
    from tsn_cli.ui import fmt

    assert fmt(value) == shown


def test_start_of_run_table_shows_only_changes(tmp_path):
    """Against the demo config: only the flags that change it are listed (everything with --verbose); the
    command stops at the missing lists after the table, so nothing is trained."""
    p = run_tsn("train", "--config", REPO / "configs/tsn_demo.yaml", "--epochs", "3", "--train-list", "t.txt",
                cwd=tmp_path, env=NARROW)
    assert p.returncode == 2 and "data.train_list: file not found: t.txt" in p.stderr
    (tmp_path / "t.txt").write_text("missing.avi 0\n")
    p = run_tsn("train", "--config", REPO / "configs/tsn_demo.yaml", "--epochs", "3", "--train-list", "t.txt",
                "-o", "train.val_interval=0", "--dry-run", cwd=tmp_path, env=NARROW)
    table = p.stderr[p.stderr.index("Run config: changes to"):p.stderr.index("--verbose shows every key")]
    keys = re.findall(r"^│ (\S+) ", table, re.MULTILINE)
    assert keys == ["data.train_list", "train.epochs", "train.val_interval"], p.stderr
    assert re.search(r"train\.epochs\s+│ 3\s+│ 16 ", table)
    p = run_tsn("train", "--config", REPO / "configs/tsn_demo.yaml", "--train-list", "t.txt", "-o",
                "train.val_interval=0", "--dry-run", "--verbose", cwd=tmp_path, env=NARROW)
    assert "runtime.amp_level" in p.stderr and "model.fc_std" in p.stderr

"""The Python API: the README's example runs as written and returns the CLI's result objects; `import tsn_cli`
stays paddle-free until a model runs; bad settings are the CLI's one-line errors."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from tests.helpers_cli import REPO


def readme_example() -> str:
    """The python code block of the README's "Python API" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section has one python example"
    return blocks[0]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("api")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        scope: dict = {"__name__": "readme_example"}
        exec(compile(readme_example(), "README.md (Python API)", "exec"), scope)
    finally:
        os.chdir(cwd)
    return root, scope


def test_readme_example_returns_the_cli_results(example):
    from tsn_cli.deploy.export import ExportResult
    from tsn_cli.deploy.predict import Prediction
    from tsn_cli.engine.evaluate import EvalResult
    from tsn_cli.engine.train import TrainResult

    root, ns = example
    run, ev, exp, pred = ns["run"], ns["ev"], ns["exp"], ns["pred"]
    assert isinstance(run, TrainResult) and run.epochs_done == 2 and not run.interrupted
    assert (root / run.output / "TSN_best.pdparams").is_file() and len(run.history) == 2
    assert isinstance(ev, EvalResult) and ev.num_videos == 12 and ev.unreadable == []
    assert isinstance(ev.top1, float) and 0.0 <= ev.top1 <= ev.top5 <= 1.0
    assert ev.top1 == pytest.approx(run.best_top1, abs=1e-6)  # the trainer's validation of its best epoch
    assert ev.summary()["top1"] == ev.top1 and ev.class_names == ["RedDisc", "GreenSquare", "BlueTriangle"]
    assert isinstance(exp, ExportResult) and exp.max_abs_diff <= 1e-4 and (root / exp.output / "tsn.yaml").is_file()
    assert isinstance(pred, Prediction) and pred.error is None and pred.path == str(ns["demo"].example)
    assert [t["label"] for t in pred.top_k] and all(t["label"] in ev.class_names for t in pred.top_k)
    assert len(pred.top_k) == 3 and math.isclose(float(pred.scores.sum()), 1.0, abs_tol=1e-5)


def test_predictor_from_weights_agrees_with_the_export(example):
    root, ns = example
    import tsn_cli as tsn

    by_weights = next(tsn.Predictor.from_weights(root / ns["run"].output).predict(ns["demo"].example))
    by_export = ns["pred"]
    assert by_weights.top_k[0]["class_id"] == by_export.top_k[0]["class_id"]
    assert float(abs(by_weights.scores - by_export.scores).max()) < 1e-4


def test_a_used_output_folder_is_refused_by_the_library(example):
    """The one-run-per-folder check lives in the trainer, so the API gets it without the CLI."""
    import tsn_cli as tsn
    from tsn_cli.errors import TsnError

    root, ns = example
    runtime = ns["cfg"].runtime.model_copy(update={"output": root / "output/api_demo"})
    cfg = ns["cfg"].model_copy(update={"runtime": runtime})
    with pytest.raises(TsnError, match="already holds a training run"):
        tsn.train(cfg)


def test_import_is_light_and_errors_are_one_line(tmp_path):
    code = (
        "import sys, tsn_cli\n"
        "assert 'tsn_cli.api' not in sys.modules\n"
        "cfg = tsn_cli.load_config(depth=34, epochs=3, overrides={'train.lr_boundaries': [0.5]})\n"
        "assert (cfg.model.depth, cfg.train.epochs, cfg.train.lr_boundaries) == (34, 3, [0.5])\n"
        "print('paddle' in sys.modules)\n"
        "from tsn_cli.errors import ConfigError\n"
        "for call in (lambda: tsn_cli.load_config(depht=18), lambda: tsn_cli.load_config(seg_num=0),\n"
        "             lambda: tsn_cli.evaluate('missing.pdparams')):\n"
        "    try:\n"
        "        call()\n"
        "    except ConfigError as exc:\n"
        "        print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "False"  # no paddle for a config
    assert lines[1].startswith("load_config: unknown setting depht (flags: seg_num, depth,")
    assert "--seg-num" in lines[2] and "seg_num" in lines[2]
    assert lines[3] == "--weights: file not found: missing.pdparams"
    assert len(lines) == 4

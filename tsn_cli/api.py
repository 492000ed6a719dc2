"""The Python API: what the `tsn` commands do, as functions that return the result dataclasses the CLI renders.

    import tsn_cli as tsn

    demo = tsn.prepare_demo("demo")                      # synthetic UCF101-layout videos + lists
    cfg = tsn.load_config("configs/tsn_demo.yaml", epochs=4, output="output/demo")
    run = tsn.train(cfg)                                 # TrainResult
    ev = tsn.evaluate(run.output)                        # EvalResult: top1, top5, per class
    exp = tsn.export(run.output, "output/demo/export")   # ExportResult
    for p in tsn.Predictor.from_export(exp.output).predict([demo.example]):
        print(p.path, p.top_k[0]["label"])

Settings resolve as on the command line (defaults <- config file <- overrides <- flags; with weights, the
config saved beside them and the checkpoint's own depth and class count), and bad input raises the same
`tsn_cli.errors.TsnError` (`ConfigError` for settings) with the same one-line message. Notes the CLI shows
on stderr go to `on_message` (default: stderr); progress is silent unless `hooks` ask for it.
Nothing here is imported by `import tsn_cli` until used, and paddle only when a model runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

from tsn_cli.deploy.predict import Prediction, Predictor
from tsn_cli.errors import ConfigError

if TYPE_CHECKING:
    from tsn_cli.config import RunConfig
    from tsn_cli.deploy.export import ExportResult
    from tsn_cli.engine.evaluate import EvalResult
    from tsn_cli.engine.train import TrainHooks, TrainResult

__all__ = ["load_config", "train", "evaluate", "export", "Predictor", "Prediction", "prepare_demo", "DemoData"]

Message = Optional[Callable[[str], None]]


def _say(on_message: Message) -> Callable[[str], None]:
    """The message sink: the caller's, else one plain line on stderr (what the CLI would show)."""
    if on_message is not None:
        return on_message
    from tsn_cli.ui import info, safe

    return lambda msg: info(f"[dim]{safe(msg)}[/]")


def _overrides(overrides: Sequence[str] | Mapping[str, Any] | None) -> Optional[list[str]]:
    """`-o` items from a list of "section.key=value" strings or a {"section.key": value} mapping."""
    if overrides is None or isinstance(overrides, (list, tuple)):
        return list(overrides) if overrides is not None else None
    # JSON is YAML, so lists, numbers and booleans keep their type through `parse_override`
    return [
        f"{k}={v if isinstance(v, str) else json.dumps(str(v) if isinstance(v, Path) else v)}"
        for k, v in overrides.items()
    ]


def _weights(weights: Path | str, on_message: Message) -> Path:
    """The weights file `weights` means (a training output folder -> its TSN_best.pdparams)."""
    from tsn_cli.model.checkpoint import resolve_weights

    path, note = resolve_weights(weights)
    if note:
        _say(on_message)(note)
    return path


def load_config(
    path: Path | str | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    *,
    weights: Path | str | None = None,
    on_message: Message = None,
    **flags: Any,
) -> RunConfig:
    """The run config, resolved as the CLI resolves it: defaults <- `path` <- `overrides` <- `flags`.

    `overrides` are "section.key=value" strings or a {"section.key": value} mapping (`-o` on the command line).
    `flags` are the first-class options by their Python names, the keys of `tsn_cli.engine.runconfig.FLAG_KEYS`:
    seg_num, depth, target_size, num_classes, pretrained, epochs, batch_size, lr, train_list, val_list, data_root,
    output, device, workers, seed, crops, eval_seg_num, labels, amp, ... (e.g.
    ``load_config("configs/tsn_demo.yaml", epochs=4, lr=0.01)``).

    Without `weights` the config is one to train with, as `tsn train` builds it: given lists bring the class
    names `tsn prepare` wrote beside them, and the test list follows a given val list. With `weights` (a checkpoint
    or a training output folder) it is one to evaluate, export or predict with, as `tsn eval` builds it: the
    config.yaml beside the weights is the base when `path` is None, and depth and class count are the checkpoint's.
    Raises `ConfigError` naming the setting (and its flag) that is wrong.
    """
    from tsn_cli.engine.runconfig import FLAG_KEYS, build_config

    known = [*FLAG_KEYS, "data"]  # data: a dataset folder or dataset.yaml, as `--data`
    unknown = sorted(set(flags) - set(known))
    if unknown:
        raise ConfigError(
            f"load_config: unknown setting {', '.join(unknown)} (flags: {', '.join(known)}; "
            "any other key goes in overrides, e.g. {'train.momentum': 0.9})"
        )
    items = _overrides(overrides)
    if weights is not None:
        resolved = _weights(weights, on_message)
        return build_config(config=path, overrides=items, weights=resolved, on_message=_say(on_message), **flags)
    cfg = build_config(config=path, overrides=items, on_message=_say(on_message), **flags)
    from tsn_cli.config import load_config as load_file
    from tsn_cli.config import parse_override
    from tsn_cli.engine.runlists import follow_given_lists

    pinned = {".".join(parse_override(item)[0]) for item in items or []}
    cfg, notes = follow_given_lists(cfg, load_file(path), pinned)
    say = _say(on_message)
    for level, line in notes:
        say(f"warning: {line}" if level == "warning" else line)
    return cfg


def train(
    cfg: RunConfig,
    *,
    weights: Path | str | None = None,
    resume: Path | str | None = None,
    overwrite: bool = False,
    hooks: Optional[TrainHooks] = None,
    on_message: Message = None,
) -> TrainResult:
    """Train `cfg` (see `load_config`) as `tsn train` does, and return the `TrainResult` (output folder, epochs
    done, best validation top-1 and its epoch, last checkpoint, per-epoch history, whether it was interrupted).

    `weights` fine-tunes from a whole-model checkpoint (or a training output folder); `resume` continues a run
    ("auto" or a .pdparams); `overwrite` starts a used output folder afresh (one run per folder: a folder
    holding another run's results is refused otherwise). `hooks` (`tsn_cli.engine.train.TrainHooks`) get the
    progress; their `on_message`, when not set, goes to `on_message` (default: stderr).
    Checkpoints, metrics.jsonl and config.yaml go to `cfg.runtime.output`; Ctrl-C saves a resumable checkpoint.
    """
    from dataclasses import replace

    from tsn_cli.engine.train import Trainer, TrainHooks

    hooks = hooks or TrainHooks()
    if hooks.on_message is TrainHooks.on_message:  # the silent default: route the notes (and warnings) to the user
        hooks = replace(hooks, on_message=_say(on_message))
    resolved = _weights(weights, on_message) if weights is not None else None
    return Trainer(cfg, weights=resolved, resume=resume, overwrite=overwrite, hooks=hooks).run()


def evaluate(
    weights: Path | str,
    list_file: Path | str | None = None,
    *,
    cfg: Optional[RunConfig] = None,
    config: Path | str | None = None,
    seg_num: Optional[int] = None,
    crops: Optional[int] = None,
    average: Optional[str] = None,
    on_message: Message = None,
    **flags: Any,
) -> EvalResult:
    """Evaluate a checkpoint as `tsn eval --weights` does and return the `EvalResult` (`top1`, `top5`,
    `mean_class_accuracy`, `summary()` -- the `--json` document -- and the scores, labels and unreadable videos).

    `weights` is a .pdparams/.safetensors file or a training output folder (its TSN_best.pdparams). `list_file`
    defaults to the run's data.test_list, else data.val_list. The settings are `cfg`, else `load_config(config,
    weights=weights, **flags)`; `seg_num` and `crops` set the test views, `average` "logits" or "scores".
    """
    from tsn_cli.engine.evaluate import evaluate as run_eval

    resolved = _weights(weights, on_message)
    if cfg is None:
        cfg = load_config(config, weights=resolved, on_message=on_message, **flags)
    say = _say(on_message)
    return run_eval(
        cfg,
        resolved,
        Path(list_file) if list_file is not None else None,
        seg_num=seg_num,
        crops=crops,
        average=average,
        on_message=say,
    )


def export(
    weights: Path | str,
    output: Path | str,
    *,
    cfg: Optional[RunConfig] = None,
    config: Path | str | None = None,
    onnx: bool = False,
    seg_num: Optional[int] = None,
    crops: Optional[int] = None,
    on_message: Message = None,
    **flags: Any,
) -> ExportResult:
    """Export a checkpoint as `tsn export` does (static inference model + tsn.yaml in `output`, and TSN.onnx with
    `onnx`) and return the `ExportResult` (output, files, and the self-check's max |logit difference|).

    `weights` and the settings resolve as in `evaluate`; `seg_num`/`crops` are the defaults stored for predict.
    The export reproduces the checkpoint's logits or nothing is written.
    """
    from tsn_cli.deploy.export import export_model

    resolved = _weights(weights, on_message)
    if cfg is None:
        cfg = load_config(config, weights=resolved, on_message=on_message, **flags)
    return export_model(cfg, resolved, output, seg_num=seg_num, crops=crops, onnx=onnx, on_message=_say(on_message))


@dataclass
class DemoData:
    """The demo dataset `prepare_demo` wrote: its folder, the split's lists, class names and a clip to predict."""

    root: Path
    train_list: Path
    val_list: Path
    label_names: Path
    classes: list[str]
    example: Path
    example_class: str


def prepare_demo(
    out_dir: Path | str,
    *,
    num_classes: int = 6,
    videos_per_class: int = 16,
    frames: int = 32,
    seed: int = 0,
    split: int = 1,
    overwrite: bool = False,
) -> DemoData:
    """`tsn prepare demo OUT_DIR` then `tsn prepare ucf101 OUT_DIR --split N`: the synthetic UCF101-layout demo
    (moving shapes a small TSN learns in minutes on a CPU) and its train/val video lists.

    Returns the `DemoData` paths to train and evaluate on. `out_dir` must be new or empty (a previous demo only
    with `overwrite`); an interrupted one with the same settings is resumed.
    """
    from tsn_cli.errors import DataError
    from tsn_cli.prepare.demo import make_demo
    from tsn_cli.prepare.ucf101 import LABEL_FILE, prepare_ucf101

    info = make_demo(
        out_dir,
        num_classes=num_classes,
        videos_per_class=videos_per_class,
        frames=frames,
        seed=seed,
        overwrite=overwrite,
    )
    report = prepare_ucf101(out_dir, [split])
    if report.bad:  # the demo writes every video itself: a skipped one is a broken demo, not data to live with
        bad = report.bad[0]
        raise DataError(f"{out_dir}: demo video {bad.path} is unusable ({bad.reason}); rebuild with overwrite=True")
    lists = {li.subset: Path(li.path) for li in report.lists if li.kind == "videos"}
    root = Path(info["root"])
    return DemoData(
        root=root,
        train_list=lists["train"],
        val_list=lists["val"],
        label_names=root / LABEL_FILE,
        classes=list(info["classes"]),
        example=Path(info["example"]),
        example_class=info["example_class"],
    )

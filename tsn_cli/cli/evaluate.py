"""`tsn eval`: evaluate weights on a list with the CenterCrop protocol or multi-view tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tsn_cli.cli import common as C


def evaluate(
    weights: Annotated[
        Optional[str],
        typer.Option(
            "--weights",
            "-w",
            help="Checkpoint to evaluate (.pdparams/.safetensors; PaddleVideo's work unchanged), a training output "
            "folder (its TSN_best.pdparams), an http(s):// URL or a known name (tsn_k400).",
        ),
    ] = None,
    model: Annotated[
        Optional[Path],
        typer.Option(
            "--model",
            "-m",
            rich_help_panel="Exported model",
            help="Instead of --weights: a `tsn export` folder, scored on --backend (views, classes, preprocessing from "
            "its tsn.yaml).",
        ),
    ] = None,
    backend: Annotated[
        Optional[str],
        typer.Option(
            "--backend",
            rich_help_panel="Exported model",
            help="With --model: paddle (default), onnxruntime, openvino or auto (fastest measured).",
        ),
    ] = None,
    precision: Annotated[
        Optional[str],
        typer.Option(
            "--precision",
            rich_help_panel="Exported model",
            help="With --model: fp32 (default) or int8 (the `tsn export --int8` model).",
        ),
    ] = None,
    list_file: Annotated[
        Optional[Path],
        typer.Option(
            "--list",
            "-l",
            help="List to evaluate (default: data.test_list, else data.val_list, of the run's saved config).",
        ),
    ] = None,
    data: C.DataOpt = None,
    config: C.ConfigOpt = None,
    override: C.OverrideOpt = None,
    seg_num: Annotated[
        Optional[int],
        typer.Option(
            "--seg-num",
            help="Test segments (default: the model's seg_num; PaddleVideo's test uses 25).",
            rich_help_panel="Views",
        ),
    ] = None,
    crops: C.CropsOpt = None,
    average: Annotated[
        Optional[str],
        typer.Option(
            "--average",
            help="Combine views by mean of 'logits' (PaddleVideo) or of softmax 'scores'.",
            rich_help_panel="Views",
        ),
    ] = None,
    max_views_per_batch: Annotated[
        Optional[int],
        typer.Option(
            "--max-views-per-batch",
            help="Frames per backbone batch (bounds memory; results are identical).",
            rich_help_panel="Views",
        ),
    ] = None,
    depth: C.DepthOpt = None,
    target_size: C.TargetSizeOpt = None,
    num_classes: C.NumClassesOpt = None,
    data_root: C.DataRootOpt = None,
    labels: C.LabelsOpt = None,
    batch_size: C.BatchSizeOpt = None,
    device: C.DeviceOpt = None,
    workers: C.WorkersOpt = None,
    decode_workers: C.DecodeWorkersOpt = None,
    seed: C.SeedOpt = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", help="Write confusion_matrix.csv/.png and predictions.csv here.")
    ] = None,
    save_scores: Annotated[
        Optional[Path], typer.Option("--save-scores", help="Save every video's score vector (.npz) for later fusion.")
    ] = None,
    sha256: C.Sha256Opt = None,
    video_timeout: C.VideoTimeoutOpt = None,
    json_out: C.JsonOpt = False,
) -> None:
    """Evaluate a checkpoint: top-1, top-5, mean class accuracy, per-class accuracy.

    The model settings, class names and default list come from the config.yaml saved beside the weights unless
    --config is given; without either, depth and class count are read from the checkpoint and the classes are named
    by id (--labels). The result names the list scored. Exit code 1 when some videos were unreadable (they are
    listed, never replaced); 2 when the list has a label the model does not know or no video could be read.
    Videos that decode only partly (truncated) are scored from the frames that decode and listed as warnings
    (exit code unaffected).

    With --model, an exported folder is scored instead (the deployed file itself, on --backend and --precision),
    with the same protocol, metrics, JSON, reports and exit codes; the next videos are decoded by --decode-workers
    processes during inference.

    Examples:\n
      tsn eval --weights output/TSN_ucf101/TSN_best.pdparams\n
      tsn eval --weights output/TSN_mine/TSN_best.pdparams --data my_videos  (its test list, else its val list)\n
      tsn eval --model output/demo/export --backend onnxruntime --list demo/ucf101_val_split_1_videos.txt --json\n
      tsn eval --weights TSN_k400.pdparams --config configs/tsn_k400_videos.yaml --seg-num 25 --crops 10\n
      tsn eval --weights output/demo/TSN_best.pdparams --json --output output/demo/eval\n
      tsn eval --weights output/demo --list demo/ucf101_val_split_1_videos.txt  (a folder: its TSN_best.pdparams)\n
      python -m paddle.distributed.launch --nproc_per_node 2 $(which tsn) eval --weights W  (same numbers, sharded)
    """
    from tsn_cli import ui  # here and below, not at the top: `tsn --help` needs no rich progress or tables
    from tsn_cli.data.budget import set_video_timeout
    from tsn_cli.engine.evaluate import evaluate as run_eval
    from tsn_cli.errors import ConfigError

    set_video_timeout(video_timeout)  # before any worker starts: they inherit it

    if (weights is None) == (model is None):
        raise ConfigError("give exactly one of --weights (a checkpoint) or --model (a `tsn export` folder)")
    progress = ui.make_progress(disable=json_out)
    if model is not None:
        model_flags = {
            "--depth": depth,
            "--target-size": target_size,
            "--num-classes": num_classes,
            "--labels": labels,
            "--device": device,
            "--batch-size": batch_size,
            "--sha256": sha256,
        }
        given = [k for k, v in model_flags.items() if v is not None]
        if given:
            raise ConfigError(
                f"{given[0]}: not used with --model (the exported model fixes it); drop it or use --weights"
            )
        cfg = _export_eval_config(
            model,
            list_file,
            config=config,
            override=override,
            data=data,
            data_root=data_root,
            workers=workers,
            seed=seed,
            seg_num=seg_num,
            crops=crops,
        )
        from tsn_cli.deploy.evaluate import evaluate_export

        with progress:
            result = evaluate_export(
                cfg,
                model,
                list_file,
                backend=backend or "paddle",
                precision=precision or "fp32",
                seg_num=seg_num,
                crops=crops,
                average=average,
                batch_views=max_views_per_batch,
                decode_workers=decode_workers,
                **_callbacks(progress),
            )
        _report(result, output, save_scores, json_out)
        return
    for flag, value in (("--backend", backend), ("--precision", precision)):
        if value is not None:
            raise ConfigError(f"{flag}: only with --model (a `tsn export` folder); --weights runs the dygraph model")
    if decode_workers is not None:
        raise ConfigError("--decode-workers: only with --model; with --weights the data loader's --workers decode")
    weights = C.resolve_weights(weights, sha256=sha256)
    cfg = C.build_config(
        config=config,
        overrides=override,
        data=data,
        weights=weights,
        depth=depth,
        target_size=target_size,
        num_classes=num_classes,
        data_root=data_root,
        device=device,
        workers=workers,
        seed=seed,
        crops=crops,
        eval_seg_num=seg_num,
        labels=labels,
        average=average,
        eval_batch_size=batch_size,
        max_views_per_batch=max_views_per_batch,
    )
    hint = C.no_config_hint(config, weights)
    if list_file is None and cfg.data.test_list is None and cfg.data.val_list is None and hint:
        raise ConfigError(
            f"--list is not set and {hint} to take data.test_list from: "
            "give --list FILE, or --config with the training config"
        )
    from tsn_cli.runtime import dist_info

    main_rank = dist_info()[1] == 0  # in a distributed run only rank 0 prints and writes files
    progress = ui.make_progress(disable=json_out or not main_rank)
    from tsn_cli.engine.build import class_names_warning

    names_warning = class_names_warning(cfg)
    if names_warning and main_rank:
        ui.warn(ui.safe(names_warning))
    with progress:
        result = run_eval(cfg, weights, list_file, **_callbacks(progress))
    if not result.is_main:
        return
    _report(result, output, save_scores, json_out)


def _callbacks(progress) -> dict:
    """on_start / on_batch / on_message for an evaluation shown on `progress`."""
    from tsn_cli import ui

    task = {}

    def on_start(n):
        task["id"] = progress.add_task("evaluating", total=n)

    def on_batch(n):
        progress.advance(task["id"], n)

    def on_message(msg):
        progress.console.print(f"[dim]{ui.safe(msg)}[/]")

    return {"on_start": on_start, "on_batch": on_batch, "on_message": on_message}


def _export_eval_config(model, list_file, *, config, override, data, data_root, workers, seed, seg_num, crops):
    """The run config of `tsn eval --model`: the list's settings from --config (and --data), else the export's
    saved config.yaml; usage errors for flags that cannot apply."""
    from tsn_cli.config import CONFIG_NAME
    from tsn_cli.errors import ConfigError

    if crops is not None and crops not in (1, 3, 10):
        raise ConfigError(f"--crops: must be 1, 3 or 10, got {crops}")
    if seg_num is not None and seg_num < 1:
        raise ConfigError(f"--seg-num: must be >= 1, got {seg_num}")
    saved = Path(model) / CONFIG_NAME
    cfg = C.build_config(
        config=config or (saved if saved.is_file() else None),
        overrides=override,
        data=data,
        data_root=data_root,
        workers=workers,
        seed=seed,
    )
    if data is not None:
        from tsn_cli.deploy.artifact import read_meta

        n = int(read_meta(model)["num_classes"])
        if cfg.model.num_classes != n:
            raise ConfigError(f"--data {data}: {cfg.model.num_classes} classes, the exported model {model} has {n}")
    if list_file is None and cfg.data.test_list is None and cfg.data.val_list is None:
        raise ConfigError(f"--list is not set and {saved} names no data.test_list: give --list FILE")
    return cfg


def _report(result, output, save_scores, json_out) -> None:
    """Print (tables or JSON) and write the reports of an evaluation; exit 1 with unreadable videos."""
    from tsn_cli import ui
    from tsn_cli.engine.evaluate import save_scores as write_scores
    from tsn_cli.engine.evaluate import write_reports

    summary = result.summary()
    scored = summary["num_videos"] > 0
    if output and scored:  # no reports of nothing: they would read as a result
        summary["files"] = [str(p) for p in write_reports(result, output)]
    if save_scores and scored:
        write_scores(result, save_scores)
        summary["scores_file"] = str(save_scores)
    if json_out:
        ui.print_json(summary)
    else:
        p = summary["protocol"]
        if scored:
            crops = f"{p['crops']} crop" + ("s" if p["crops"] > 1 else "")
            rows = [
                ("top-1", f"{summary['top1']:.4f}"),
                ("top-5", f"{summary['top5']:.4f}"),
                ("mean class accuracy", f"{summary['mean_class_accuracy']:.4f}"),
                ("videos scored", summary["num_videos"]),
                ("unreadable", len(summary["unreadable"])),
                ("with warnings (scored)", len(summary["warnings"])),
            ]
            title = (
                f"Evaluation of {_shown(summary['list'])}: {p['seg_num']} seg x {crops}, {p['target_size']} px, "
                f"mean of {p['average']}"
            )
            if summary["model"]:  # the deployed file itself was scored: say which, on what
                rows.insert(0, ("model", f"{_shown(summary['model'])} ({summary['backend']}, {summary['precision']})"))
            ui.console.print(ui.table(title, ["metric", "value"], rows, numeric=(1,)))
        worst = worst_classes(summary) if scored else []
        if worst:
            title = f"Worst classes (below the mean class accuracy {summary['mean_class_accuracy']:.4f})"
            ui.console.print(
                ui.table(
                    title,
                    ["class", "accuracy", "videos"],
                    [(c["label"], f"{c['accuracy']:.4f}", c["count"]) for c in worst],
                    numeric=(1, 2),
                )
            )
        if summary["warnings"]:
            ui.warn(f"{len(summary['warnings'])} video(s) decode only partly; scored from the frames that decode")
            rows = [(w["path"], w["warning"]) for w in summary["warnings"]]
            ui.console.print(ui.table("Videos with warnings (scored)", ["path", "warning"], rows, paths=(0,)))
        if summary["unreadable"]:
            if scored:
                ui.warn(f"{len(summary['unreadable'])} unreadable video(s) were not scored (exit code 1)")
            ui.console.print(
                ui.table(
                    "Unreadable videos (not scored)",
                    ["path", "reason"],
                    [(u["path"], u["reason"]) for u in summary["unreadable"]],
                    paths=(0,),
                )
            )
        for f in summary.get("files", []):
            ui.info(f"wrote {f}")
    if not scored:
        from tsn_cli.errors import DataError

        raise DataError(f"no video could be read from {summary['list']}: nothing was scored")
    if summary["unreadable"]:
        raise typer.Exit(1)


def worst_classes(summary: dict, limit: int = 10) -> list[dict]:
    """Up to `limit` classes below the mean class accuracy, worst first (none when every class is as good)."""
    mean = summary["mean_class_accuracy"]
    below = [c for c in summary["per_class"] if c["accuracy"] is not None and c["accuracy"] < min(mean, 1.0) - 1e-9]
    return sorted(below, key=lambda c: c["accuracy"])[:limit]


def _shown(path: str) -> str:
    """A list path as short as it can be said: relative to the working folder when it lies under it."""
    import os

    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel

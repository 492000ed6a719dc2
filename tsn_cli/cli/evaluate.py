"""`tsn eval`: evaluate weights on a list with the CenterCrop protocol or multi-view tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tsn_cli import ui
from tsn_cli.cli import common as C


def evaluate(
    weights: Annotated[Path, typer.Option("--weights", "-w", help="Checkpoint to evaluate (.pdparams/.safetensors; PaddleVideo's work unchanged).")],
    list_file: Annotated[Optional[Path], typer.Option("--list", "-l", help="List to evaluate (default: data.test_list, else data.val_list).")] = None,
    config: C.ConfigOpt = None,
    override: C.OverrideOpt = None,
    seg_num: Annotated[Optional[int], typer.Option("--seg-num", help="Test segments (default: the model's seg_num; PaddleVideo's test uses 25).", rich_help_panel="Views")] = None,
    crops: C.CropsOpt = None,
    average: Annotated[Optional[str], typer.Option("--average", help="Combine views by mean of 'logits' (PaddleVideo) or of softmax 'scores'.", rich_help_panel="Views")] = None,
    max_views_per_batch: Annotated[Optional[int], typer.Option("--max-views-per-batch", help="Frames per backbone batch (bounds memory; results are identical).", rich_help_panel="Views")] = None,
    depth: C.DepthOpt = None,
    target_size: C.TargetSizeOpt = None,
    num_classes: C.NumClassesOpt = None,
    data_root: C.DataRootOpt = None,
    batch_size: C.BatchSizeOpt = None,
    device: C.DeviceOpt = None,
    workers: C.WorkersOpt = None,
    seed: C.SeedOpt = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="Write confusion_matrix.csv/.png and predictions.csv here.")] = None,
    save_scores: Annotated[Optional[Path], typer.Option("--save-scores", help="Save every video's score vector (.npz) for later fusion.")] = None,
    json_out: C.JsonOpt = False,
) -> None:
    """Evaluate a checkpoint: top-1, top-5, mean class accuracy, per-class accuracy.

    The model settings and class names come from the config.yaml saved beside the weights unless --config is given.
    Exit code 1 when some videos were unreadable (they are listed, never replaced).

    Examples:\n
      tsn eval --weights output/TSN_ucf101/TSN_best.pdparams\n
      tsn eval --weights TSN_k400.pdparams --config configs/tsn_k400_videos.yaml --seg-num 25 --crops 10\n
      tsn eval --weights output/demo/TSN_best.pdparams --json --output output/demo/eval\n
      python -m paddle.distributed.launch --nproc_per_node 2 $(which tsn) eval --weights W  (same numbers, sharded)
    """
    from tsn_cli.engine.evaluate import evaluate as run_eval, save_scores as write_scores, write_reports
    from tsn_cli.errors import ConfigError

    if not Path(weights).is_file():
        raise ConfigError(f"--weights: file not found: {weights}")
    cfg = C.build_config(
        config=config, overrides=override, weights=weights, depth=depth, target_size=target_size, num_classes=num_classes,
        data_root=data_root, device=device, workers=workers, seed=seed, crops=crops, eval_seg_num=seg_num,
    )
    from tsn_cli.config import with_values

    cfg = with_values(cfg, {"eval.average": average, "eval.batch_size": batch_size, "eval.max_views_per_batch": max_views_per_batch}, source="option")
    from tsn_cli.engine.device import dist_info

    main_rank = dist_info()[1] == 0  # in a distributed run only rank 0 prints and writes files
    progress = ui.make_progress(disable=json_out or not main_rank)
    task = {}

    def on_start(n):
        task["id"] = progress.add_task("evaluating", total=n)

    def on_batch(n):
        progress.advance(task["id"], n)

    def on_message(msg):
        progress.console.print(f"[dim]{ui.safe(msg)}[/]")

    with progress:
        result = run_eval(cfg, weights, list_file, on_start=on_start, on_batch=on_batch, on_message=on_message)
    if not result.is_main:
        return
    summary = result.summary()
    if output:
        summary["files"] = [str(p) for p in write_reports(result, output)]
    if save_scores:
        write_scores(result, save_scores)
        summary["scores_file"] = str(save_scores)
    if json_out:
        ui.print_json(summary)
    else:
        p = summary["protocol"]
        ui.console.print(
            ui.table(
                f"Evaluation ({p['seg_num']} segments x {p['crops']} crop(s), {p['target_size']} px, mean of {p['average']})",
                ["metric", "value"],
                [("top-1", f"{summary['top1']:.4f}"), ("top-5", f"{summary['top5']:.4f}"), ("mean class accuracy", f"{summary['mean_class_accuracy']:.4f}"), ("videos scored", summary["num_videos"]), ("unreadable", len(summary["unreadable"]))],
                numeric=(1,),
            )
        )
        worst = sorted((c for c in summary["per_class"] if c["accuracy"] is not None), key=lambda c: c["accuracy"])[:10]
        if worst:
            ui.console.print(ui.table("Worst classes", ["class", "accuracy", "videos"], [(c["label"], f"{c['accuracy']:.3f}", c["count"]) for c in worst], numeric=(1, 2)))
        if summary["unreadable"]:
            ui.warn(f"{len(summary['unreadable'])} unreadable video(s) were not scored (exit code 1)")
            ui.console.print(ui.table("Unreadable videos (not scored)", ["path", "reason"], [(u["path"], u["reason"]) for u in summary["unreadable"]]))
        for f in summary.get("files", []):
            ui.info(f"wrote {f}")
    if summary["unreadable"]:
        raise typer.Exit(1)

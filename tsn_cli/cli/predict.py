"""`tsn predict`: top-k classes for video files, folders and globs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tsn_cli import ui
from tsn_cli.cli import common as C


def predict(
    paths: Annotated[list[str], typer.Argument(help="Video files, folders (all videos inside) or globs.")],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="A `tsn export` folder (fastest: paddle.inference / ONNX Runtime).")] = None,
    weights: C.WeightsOpt = None,
    config: C.ConfigOpt = None,
    override: C.OverrideOpt = None,
    seg_num: Annotated[Optional[int], typer.Option("--seg-num", help="Segments (default: the model's).", rich_help_panel="Views")] = None,
    crops: C.CropsOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Classes to show per video.")] = 5,
    backend: Annotated[str, typer.Option("--backend", help="With --model: paddle (paddle.inference) or onnxruntime.")] = "paddle",
    device: C.DeviceOpt = None,
    tensorrt: Annotated[bool, typer.Option("--tensorrt", help="GPU only: TensorRT fp16 in paddle.inference.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU math threads (default: all cores).")] = None,
    batch_views: Annotated[Optional[int], typer.Option("--batch-views", min=1, help="Most views per engine run (default 10 with --model: fastest on CPU; the result does not change).")] = None,
    all_scores: Annotated[bool, typer.Option("--all-scores", help="With --json: include the full softmax vector.")] = False,
    benchmark: Annotated[bool, typer.Option("--benchmark", help="Per-stage timings (decode, preprocess, inference, postprocess).")] = False,
    json_out: C.JsonOpt = False,
) -> None:
    """Predict the class of videos with an exported model (--model) or a checkpoint (--weights).

    Exit code 1 when any input failed (the others are still predicted), 2 for a usage error.

    Examples:\n
      tsn predict demo/example.avi --model output/demo/export\n
      tsn predict videos/ --model inference/TSN --seg-num 25 --crops 10 --top-k 5 --json\n
      tsn predict clip.mp4 --weights output/demo/TSN_best.pdparams
    """
    from tsn_cli.deploy import predict as P
    from tsn_cli.engine.device import resolve_device
    from tsn_cli.errors import ConfigError

    if (model is None) == (weights is None):
        raise ConfigError("give exactly one of --model (a `tsn export` folder) or --weights (a checkpoint)")
    if crops is not None and crops not in (1, 3, 10):
        raise ConfigError(f"--crops: must be 1, 3 or 10, got {crops}")
    if seg_num is not None and seg_num < 1:
        raise ConfigError(f"--seg-num: must be >= 1, got {seg_num}")
    if backend not in ("paddle", "onnxruntime"):
        raise ConfigError(f"--backend: unknown backend {backend!r} (allowed: paddle, onnxruntime)")
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"--weights: file not found: {weights}")
    files = P.expand_inputs(paths)
    if not files:
        raise ConfigError(f"no videos found in {' '.join(paths)}")
    msg = lambda m: ui.info(f"[dim]{ui.safe(m)}[/]")  # noqa: E731
    if model is not None:
        dev = resolve_device(device or "auto")
        predictor = P.predictor_from_export(model, backend=backend, device=dev, threads=threads, tensorrt=tensorrt, seg_num=seg_num, crops=crops, top_k=top_k, batch_views=batch_views)
    else:
        cfg = C.build_config(config=config, overrides=override, weights=weights, device=device, crops=crops, eval_seg_num=seg_num)
        predictor = P.predictor_from_weights(cfg, weights, top_k=top_k, on_message=msg)
        if batch_views:
            predictor.batch_views = batch_views
    results = []
    progress = ui.make_progress(transient=True, disable=json_out or len(files) < 2)
    with progress:
        task = progress.add_task("predicting", total=len(files))
        for r in predictor.predict(files):
            results.append(r)
            progress.advance(task)
    failed = [r for r in results if r.error is not None]
    if json_out:
        doc = [r.to_json(all_scores) for r in results]
        if benchmark:
            doc = {"predictions": doc, "timings_ms": _timings(results)}
        ui.print_json(doc)
    else:
        for r in results:
            if r.error is None:
                ui.console.print(ui.table(r.path, ["rank", "class", "label", "score"], [(i + 1, t["class_id"], t["label"], f"{t['score']:.4f}") for i, t in enumerate(r.top_k)], numeric=(0, 1, 3)))
        if failed:
            ui.console.print(ui.table("Failed inputs", ["path", "error"], [(r.path, r.error) for r in failed]))
        if benchmark:
            t = _timings(results)
            ui.console.print(ui.table("Timings per video (ms)", ["stage", "mean", "total"], [(k, f"{v['mean']:.1f}", f"{v['total']:.1f}") for k, v in t.items()], numeric=(1, 2)))
    if failed:
        raise typer.Exit(1)


def _timings(results) -> dict:
    """Per-stage mean and total milliseconds over the inputs that succeeded."""
    stages = ["decode", "preprocess", "inference", "postprocess"]
    ok = [r for r in results if r.error is None]
    out = {}
    for s in stages:
        vals = [r.timings.get(s, 0.0) * 1000 for r in ok]
        out[s] = {"mean": sum(vals) / len(vals) if vals else 0.0, "total": sum(vals)}
    return out

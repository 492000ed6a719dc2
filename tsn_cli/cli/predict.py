"""`tsn predict`: top-k classes for video files, folders and globs."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Annotated, Optional

import typer

from tsn_cli.cli import common as C


def predict(
    paths: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="Video files, frame folders (img_00001.jpg ...), folders (all videos and frame folders inside), "
            "globs; or one live source: a webcam index (0) or an rtsp:// or http(s):// stream.",
            show_default=False,
        ),
    ] = None,
    list_file: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--list",
            help="A PaddleVideo list file (path label, or frame_dir num_frames label): predict its entries. "
            "Repeatable.",
        ),
    ] = None,
    model: Annotated[
        Optional[Path],
        typer.Option("--model", "-m", help="A `tsn export` folder (fastest: paddle.inference / ONNX Runtime)."),
    ] = None,
    weights: C.WeightsOpt = None,
    config: C.ConfigOpt = None,
    override: C.OverrideOpt = None,
    labels: C.LabelsOpt = None,
    seg_num: Annotated[
        Optional[int], typer.Option("--seg-num", help="Segments (default: the model's).", rich_help_panel="Views")
    ] = None,
    crops: C.CropsOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Classes to show per video.")] = 5,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="With --model: paddle (paddle.inference), onnxruntime, openvino, or auto (the fastest measured at "
            "export).",
        ),
    ] = "paddle",
    precision: Annotated[
        str,
        typer.Option(
            "--precision", help="With --model: fp32, or int8 (the `tsn export --int8` model; onnxruntime/openvino)."
        ),
    ] = "fp32",
    device: C.DeviceOpt = None,
    tensorrt: Annotated[bool, typer.Option("--tensorrt", help="GPU only: TensorRT fp16 in paddle.inference.")] = False,
    threads: Annotated[
        Optional[int], typer.Option("--threads", min=1, help="CPU math threads (default: all cores).")
    ] = None,
    batch_views: Annotated[
        Optional[int],
        typer.Option(
            "--batch-views",
            min=1,
            help="Most views per engine run (default 10 with --model: fastest on CPU; the result does not change).",
        ),
    ] = None,
    decode_workers: C.DecodeWorkersOpt = None,
    all_scores: Annotated[
        bool, typer.Option("--all-scores", help="With --json: include the full softmax vector.")
    ] = False,
    benchmark: Annotated[
        bool, typer.Option("--benchmark", help="Per-stage timings (decode, preprocess, inference, postprocess).")
    ] = False,
    sha256: C.Sha256Opt = None,
    timeline: Annotated[
        bool,
        typer.Option(
            "--timeline",
            help="Long videos: scores over time and segments (start, end, label) instead of one label.",
            rich_help_panel="Timeline",
        ),
    ] = False,
    window: Annotated[
        str,
        typer.Option(
            "--window",
            help="--timeline and live sources: window length, seconds (2s) or frames (64f).",
            rich_help_panel="Timeline",
        ),
    ] = "2s",
    stride: Annotated[
        str,
        typer.Option(
            "--stride",
            help="--timeline and live sources: step between windows (live: one prediction per stride), seconds (0.5s) "
            "or frames (16f).",
            rich_help_panel="Timeline",
        ),
    ] = "0.5s",
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold",
            min=0.0,
            max=1.0,
            help="With --timeline: a segment needs this top score.",
            rich_help_panel="Timeline",
        ),
    ] = 0.5,
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output",
            help="With --timeline: folder for timeline.csv, timeline.json, timeline.png.",
            rich_help_panel="Timeline",
        ),
    ] = None,
    results_file: Annotated[
        Optional[Path],
        typer.Option(
            "--results",
            help="Batch jobs: append one line per input to FILE (.jsonl or .csv) as it finishes; a rerun skips the "
            "inputs already in it.",
            rich_help_panel="Batch jobs",
        ),
    ] = None,
    save_video: Annotated[
        Optional[Path],
        typer.Option(
            "--save-video",
            help="One input: write it to OUT.mp4 (or .avi) with the top label and score drawn on each frame "
            "(--timeline: the label of the frame's window).",
        ),
    ] = None,
    reconnect: Annotated[
        int,
        typer.Option(
            "--reconnect",
            min=0,
            help="Live streams: reopen a dropped stream up to N times in a row.",
            rich_help_panel="Live",
        ),
    ] = 3,
    shard: Annotated[
        Optional[str],
        typer.Option(
            "--shard",
            help="I/N: predict only shard I of N (1-based) of the inputs, split by a stable hash of their paths.",
            rich_help_panel="Batch jobs",
        ),
    ] = None,
    video_timeout: C.VideoTimeoutOpt = None,
    json_out: C.JsonOpt = False,
) -> None:
    """Predict the class of videos with an exported model (--model) or a checkpoint (--weights).

    Exit code 1 when any input failed (the others are still predicted), 2 for a usage error. A video that decodes
    only partly (truncated) is predicted from the frames that decode and flagged: "warnings" in --json, a
    "(warning)" mark under its table (exit code unaffected). Several inputs end with "N predicted, M failed,
    K with warnings"; files in a folder without a video extension are skipped and counted.

    Examples:\n
      tsn predict demo/example.avi --model output/demo/export\n
      tsn predict videos/ --model inference/TSN --seg-num 25 --crops 10 --top-k 5 --json\n
      tsn predict clip.mp4 --weights output/demo/TSN_best.pdparams\n
      tsn predict clip.mp4 --weights TSN_k400.pdparams --labels Kinetics-400_label_list.txt  (no config needed)\n
      tsn predict lecture.mp4 --model export --timeline --window 2s --stride 0.5s --output timeline/\n
      tsn predict --list val.list --model export --results part1.jsonl --shard 1/4  (rerun to resume)\n
      tsn predict rtsp://camera/stream --model export --window 2s --stride 0.5s  (or 0 for a webcam)
    """
    from tsn_cli import ui
    from tsn_cli.data.budget import set_video_timeout
    from tsn_cli.deploy import predict as P
    from tsn_cli.deploy import results as R
    from tsn_cli.errors import ConfigError
    from tsn_cli.runtime import resolve_device

    set_video_timeout(video_timeout)  # before any worker starts: they inherit it

    if (model is None) == (weights is None):
        raise ConfigError("give exactly one of --model (a `tsn export` folder) or --weights (a checkpoint)")
    if sha256 is not None and weights is None:
        raise ConfigError("--sha256 pins the --weights file; an export folder (--model) has no single weights file")
    if crops is not None and crops not in (1, 3, 10):
        raise ConfigError(f"--crops: must be 1, 3 or 10, got {crops}")
    if seg_num is not None and seg_num < 1:
        raise ConfigError(f"--seg-num: must be >= 1, got {seg_num}")
    if backend not in ("auto", "paddle", "onnxruntime", "openvino"):
        raise ConfigError(f"--backend: unknown backend {backend!r} (allowed: auto, paddle, onnxruntime, openvino)")
    if precision not in ("fp32", "int8"):
        raise ConfigError(f"--precision: must be fp32 or int8, got {precision!r}")
    if model is None and (backend != "paddle" or precision != "fp32"):
        raise ConfigError("--backend/--precision: only with --model (a `tsn export` folder)")
    if output is not None and not timeline:
        raise ConfigError("--output: only used with --timeline (the folder for timeline.csv/.json/.png)")
    if timeline:
        from tsn_cli.deploy.timeline import parse_span

        parse_span(window, "--window"), parse_span(stride, "--stride")  # a bad span fails before the model loads
    if results_file is not None and timeline:
        raise ConfigError("--results: not with --timeline (use --output DIR for the timeline's files)")
    if decode_workers is not None and timeline:
        raise ConfigError("--decode-workers: not with --timeline (each video's windows are decoded in one process)")
    shard_in = R.parse_shard(shard) if shard else None
    weights = C.resolve_weights(weights, sha256=sha256)
    if not paths and not list_file:
        raise ConfigError("nothing to predict: give videos, folders or globs, or --list FILE")
    paths = paths or []
    from tsn_cli.deploy.live import is_live

    live = [p for p in paths if is_live(p) and not Path(p).exists()]
    if live and (len(paths) > 1 or list_file or results_file or shard or timeline or output):
        raise ConfigError(
            f"{live[0]}: a live source must be the only input (no --list, --results, --shard, --timeline or --output)"
        )
    if live and decode_workers is not None:
        raise ConfigError(f"--decode-workers: not with a live source ({live[0]} is read frame by frame as it comes)")
    inputs = P.Inputs(files=list(paths)) if live else P.expand_inputs(paths, [str(f) for f in list_file or []])
    skips = inputs.skip_messages()
    if not inputs.files:
        where = " ".join(paths + [str(f) for f in list_file or []])
        raise ConfigError(f"no videos found in {where}" + (f" ({'; '.join(skips)})" if skips else ""))
    files = inputs.files
    for m in skips:
        ui.info(ui.safe(m))
    if shard_in:
        files = [f for f in files if R.in_shard(f, *shard_in)]
    rf = R.ResultsFile(results_file) if results_file is not None else None
    if save_video is not None:
        from tsn_cli.deploy.annotate import check_target

        check_target(save_video)
        if len(files) != 1 or rf is not None:
            raise ConfigError(
                f"--save-video: needs exactly one input (got {len(files)})"
                if rf is None
                else "--save-video: not with --results"
            )
    if rf is not None and rf.dropped_partial:
        ui.info(f"{ui.safe(str(rf.path))}: removed a partial last line (the previous run was interrupted)")
    msg = lambda m: ui.info(f"[dim]{ui.safe(m)}[/]")  # noqa: E731
    if model is not None:
        from tsn_cli.deploy.artifact import read_meta
        from tsn_cli.engine.runconfig import export_settings

        # --config/-o: the test views and how to run apply (flags win); a preprocessing change is refused by name
        given = export_settings(config, override, read_meta(model)) if (config or override) else {}
        dev = resolve_device(device or given.get("device") or "auto")
        predictor = P.predictor_from_export(
            model,
            backend=backend,
            precision=precision,
            on_message=msg,
            device=dev,
            threads=threads or given.get("threads"),
            tensorrt=tensorrt,
            seg_num=seg_num or given.get("seg_num"),
            crops=crops or given.get("crops"),
            top_k=top_k,
            batch_views=batch_views or given.get("batch_views"),
        )
    else:
        cfg = C.build_config(
            config=config,
            overrides=override,
            weights=weights,
            device=device,
            crops=crops,
            eval_seg_num=seg_num,
            labels=labels,
        )
        predictor = P.predictor_from_weights(cfg, weights, top_k=top_k, on_message=msg)
        if batch_views:
            predictor.batch_views = batch_views
    predictor.decode_workers = decode_workers
    if live:
        from tsn_cli.cli.predict_live import run_live_cli
        from tsn_cli.deploy.timeline import export_average

        average = cfg.eval.average if model is None else export_average(model)
        run_live_cli(
            predictor, live[0], window=window, stride=stride, average=average, reconnect=reconnect, json_out=json_out
        )
        return
    if timeline:
        from tsn_cli.cli.predict_timeline import run_timelines
        from tsn_cli.deploy.timeline import export_average

        average = cfg.eval.average if model is None else export_average(model)
        failed = run_timelines(
            predictor,
            files,
            window=window,
            stride=stride,
            threshold=threshold,
            average=average,
            top_k=top_k,
            output=output,
            json_out=json_out,
            save_video=save_video,
        )
        if failed:
            raise typer.Exit(1)
        return
    if rf is not None:
        from tsn_cli.cli.predict_results import predict_to_results

        if predict_to_results(predictor, files, rf, all_scores=all_scores, json_out=json_out, shard=shard):
            raise typer.Exit(1)
        return
    results = []
    progress = ui.make_progress(transient=True, disable=json_out or len(files) < 2)
    with progress, closing(predictor.predict(files)) as predictions:  # closed on Ctrl-C: no decoder outlives us
        task = progress.add_task("predicting", total=len(files))
        for r in predictions:
            results.append(r)
            progress.advance(task)
    failed = [r for r in results if r.error is not None]
    if save_video is not None and not failed:
        from tsn_cli.deploy.annotate import save_video as write_annotated

        top = results[0].top_k[0]
        n = write_annotated(results[0].path, save_video, lambda f: (top["class_id"], top["label"], top["score"], False))
        ui.info(f"wrote {ui.safe(str(save_video))} ({n} frames, labelled {ui.safe(top['label'])})")
    warned = [r for r in results if r.error is None and r.warnings]
    summary = f"{len(results) - len(failed)} predicted, {len(failed)} failed, {len(warned)} with warnings"
    if json_out:
        doc = [r.to_json(all_scores) for r in results]
        if benchmark:
            doc = {"predictions": doc, "timings_ms": _timings(results), **_speed(predictor, results)}
        ui.print_json(doc)
        if len(results) > 1:
            ui.info(summary)  # stderr: stdout stays one JSON document
    else:
        for r in results:
            if r.error is None:
                rows = [(i + 1, t["class_id"], t["label"], f"{t['score']:.4f}") for i, t in enumerate(r.top_k)]
                title = r.path + ("  (warning)" if r.warnings else "")
                ui.console.print(ui.table(title, ["rank", "class", "label", "score"], rows, numeric=(0, 1, 3)))
                for w in r.warnings:  # under its table, full width (a caption would wrap to the table's)
                    ui.console.print(f"[yellow](warning)[/] {ui.safe(w)}")
        if failed:
            ui.console.print(
                ui.table("Failed inputs", ["path", "error"], [(r.path, r.error) for r in failed], paths=(0,))
            )
        if benchmark:
            t = _timings(results)
            s = _speed(predictor, results)
            fps = "-" if s["inference_frames_per_s"] is None else f"{s['inference_frames_per_s']:.1f}"
            title = f"Timings per video (ms); {s['backend']}, {s['precision']}: inference {fps} frames/s"
            ui.console.print(
                ui.table(
                    title,
                    ["stage", "mean", "total"],
                    [(k, f"{v['mean']:.1f}", f"{v['total']:.1f}") for k, v in t.items()],
                    numeric=(1, 2),
                )
            )
        if len(results) > 1:
            ui.console.print(summary)
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


def _speed(predictor, results) -> dict:
    """What ran (backend, precision) and its inference frames/s over the inputs that succeeded."""
    ok = [r for r in results if r.error is None]
    secs = sum(r.timings.get("inference", 0.0) for r in ok)
    frames = len(ok) * predictor.seg_num * predictor.crops
    return {
        "backend": getattr(predictor, "backend", "dygraph"),
        "precision": getattr(predictor, "precision", "fp32"),
        "inference_frames_per_s": frames / secs if secs > 0 else None,
    }

"""`tsn export`: a static inference model (+ ONNX) that reproduces the checkpoint's predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tsn_cli.cli import common as C


def export(
    weights: Annotated[
        str,
        typer.Option(
            "--weights",
            "-w",
            help="Checkpoint to export (.pdparams/.safetensors), a training output folder (its TSN_best.pdparams), an "
            "http(s):// URL or a known name (tsn_k400).",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", help="Folder for TSN.json/.pdmodel + TSN.pdiparams + tsn.yaml.")],
    config: C.ConfigOpt = None,
    override: C.OverrideOpt = None,
    seg_num: Annotated[
        Optional[int],
        typer.Option(
            "--seg-num",
            help="Default segments for predict (stored in tsn.yaml; the graph accepts any).",
            rich_help_panel="Views",
        ),
    ] = None,
    crops: C.CropsOpt = None,
    depth: C.DepthOpt = None,
    target_size: C.TargetSizeOpt = None,
    num_classes: C.NumClassesOpt = None,
    labels: C.LabelsOpt = None,
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Also write TSN.onnx via paddle2onnx (pip install 'tsn-cli\\[onnx]').")
    ] = False,
    sha256: C.Sha256Opt = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            rich_help_panel="INT8",
            help="Also write TSN.int8.onnx: static int8 calibrated on --calib-list, scored against fp32 (implies "
            "--onnx).",
        ),
    ] = False,
    calib_list: Annotated[
        Optional[Path],
        typer.Option(
            "--calib-list",
            rich_help_panel="INT8",
            help="With --int8: videos whose test views calibrate the int8 ranges (a list file).",
        ),
    ] = None,
    calib_size: Annotated[
        int,
        typer.Option(
            "--calib-size",
            min=1,
            rich_help_panel="INT8",
            help="With --int8: calibration clips, spread evenly over the list.",
        ),
    ] = 64,
    eval_list: Annotated[
        Optional[Path],
        typer.Option(
            "--eval-list",
            rich_help_panel="INT8",
            help="With --int8: list to score fp32 and int8 on (default: --calib-list).",
        ),
    ] = None,
    wait: C.WaitOpt = False,
    json_out: C.JsonOpt = False,
) -> None:
    """Export a checkpoint for deployment and check that the export gives the same logits.

    Examples:\n
      tsn export --weights output/demo/TSN_best.pdparams --output output/demo/export\n
      tsn export --weights TSN_k400.pdparams --config configs/tsn_k400_videos.yaml --seg-num 25 --crops 10 --output \
inference/TSN --onnx\n
      tsn export --weights output/demo --output out/export --int8 --calib-list train.list --eval-list val.list

    With --onnx, each installed backend's frames/s is measured and recorded in tsn.yaml (`--backend auto` picks the
    fastest). With --int8, the table shows fp32 and int8 top-1 and frames/s on the same backend; a CPU without
    VNNI/AMX, or int8 measured no faster, is said in the output ("deploy fp32").
    """
    from tsn_cli import ui
    from tsn_cli.deploy.export import export_model
    from tsn_cli.errors import ConfigError

    if not int8 and (calib_list is not None or eval_list is not None):
        raise ConfigError("--calib-list/--eval-list: only with --int8")
    if int8 and calib_list is None:
        raise ConfigError("--int8 needs --calib-list LIST (videos whose test views calibrate the int8 ranges)")
    weights = C.resolve_weights(weights, sha256=sha256)
    cfg = C.build_config(
        config=config,
        overrides=override,
        weights=weights,
        depth=depth,
        target_size=target_size,
        num_classes=num_classes,
        crops=crops,
        eval_seg_num=seg_num,
        labels=labels,
    )
    with ui.err_console.status("exporting and checking ..."):
        result = export_model(
            cfg,
            weights,
            output,
            onnx=onnx,
            int8=int8,
            calib_list=calib_list,
            calib_size=calib_size,
            eval_list=eval_list,
            wait=wait,
            on_message=lambda m: ui.info(f"[dim]{ui.safe(m)}[/]"),
        )
    doc = {
        "output": str(result.output),
        "files": [str(p) for p in result.files],
        "max_abs_diff": result.max_abs_diff,
        "onnx_max_abs_diff": result.onnx_max_abs_diff,
        **result.size,
        "benchmark": result.benchmark or None,
        "int8": result.int8,
    }
    if json_out:
        ui.print_json(doc)
    else:
        rows = [("output", doc["output"])] + [("file", p) for p in doc["files"]]
        rows += [("exported vs dygraph max |diff|", f"{result.max_abs_diff:.2e}")]
        if result.onnx_max_abs_diff is not None:
            rows.append(("ONNX vs dygraph max |diff|", f"{result.onnx_max_abs_diff:.2e}"))
        rows += [(k, v) for k, v in result.size.items()]
        for precision, fps in (result.benchmark.get("frames_per_s") or {}).items():
            views = result.benchmark["views"]
            rows += [(f"{precision} frames/s on {b} ({views} views)", f"{v:.1f}") for b, v in fps.items()]
        ui.console.print(ui.table("Export", ["item", "value"], rows, paths=(1,)))
        if result.int8:
            _int8_table(result.int8)


def _int8_table(rec: dict) -> None:
    """fp32 vs int8 on the evaluation list: top-1 and frames/s, and the note when int8 does not pay here."""
    from tsn_cli import ui

    ev = rec["eval"]
    rows = []
    for p in ("fp32", "int8"):
        fps = ev[p]["frames_per_s"]
        top1 = ev[p]["top1"]
        rows.append(
            (
                p,
                "-" if top1 is None else f"{top1:.4f}",
                "-" if fps is None else f"{fps:.1f}",
                ev[p]["num_videos"],
                f"{rec['size_mb'][p]:.1f}",
            )
        )
    title = (
        f"INT8 vs fp32 on {ev['list']} ({ev['backend']}); calibrated on {rec['calibration']['clips']} clips of "
        f"{rec['calibration']['list']}"
    )
    ui.console.print(ui.table(title, ["precision", "top-1", "frames/s", "videos", "MB"], rows, numeric=(1, 2, 3, 4)))
    if rec.get("note"):
        ui.warn(rec["note"])

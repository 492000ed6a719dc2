"""`tsn export`: a static inference model (+ ONNX) that reproduces the checkpoint's predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tsn_cli import ui
from tsn_cli.cli import common as C


def export(
    weights: Annotated[Path, typer.Option("--weights", "-w", help="Checkpoint to export (.pdparams/.safetensors).")],
    output: Annotated[Path, typer.Option("--output", help="Folder for TSN.json/.pdmodel + TSN.pdiparams + tsn.yaml.")],
    config: C.ConfigOpt = None,
    override: C.OverrideOpt = None,
    seg_num: Annotated[Optional[int], typer.Option("--seg-num", help="Default segments for predict (stored in tsn.yaml; the graph accepts any).", rich_help_panel="Views")] = None,
    crops: C.CropsOpt = None,
    depth: C.DepthOpt = None,
    target_size: C.TargetSizeOpt = None,
    num_classes: C.NumClassesOpt = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="Also write TSN.onnx via paddle2onnx (pip install 'tsn-cli[onnx]').")] = False,
    json_out: C.JsonOpt = False,
) -> None:
    """Export a checkpoint for deployment and check that the export gives the same logits.

    Examples:\n
      tsn export --weights output/demo/TSN_best.pdparams --output output/demo/export\n
      tsn export --weights TSN_k400.pdparams --config configs/tsn_k400_videos.yaml --seg-num 25 --crops 10 --output inference/TSN --onnx
    """
    from tsn_cli.deploy.export import export_model
    from tsn_cli.errors import ConfigError

    if not Path(weights).is_file():
        raise ConfigError(f"--weights: file not found: {weights}")
    cfg = C.build_config(config=config, overrides=override, weights=weights, depth=depth, target_size=target_size, num_classes=num_classes, crops=crops, eval_seg_num=seg_num)
    with ui.err_console.status("exporting and checking ..."):
        result = export_model(cfg, weights, output, onnx=onnx, on_message=lambda m: ui.info(f"[dim]{ui.safe(m)}[/]"))
    doc = {
        "output": str(result.output),
        "files": [str(p) for p in result.files],
        "max_abs_diff": result.max_abs_diff,
        "onnx_max_abs_diff": result.onnx_max_abs_diff,
        **result.size,
    }
    if json_out:
        ui.print_json(doc)
    else:
        rows = [("output", doc["output"])] + [("file", p) for p in doc["files"]]
        rows += [("exported vs dygraph max |diff|", f"{result.max_abs_diff:.2e}")]
        if result.onnx_max_abs_diff is not None:
            rows.append(("ONNX vs dygraph max |diff|", f"{result.onnx_max_abs_diff:.2e}"))
        rows += [(k, v) for k, v in result.size.items()]
        ui.console.print(ui.table("Export", ["item", "value"], rows))

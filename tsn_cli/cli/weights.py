"""`tsn weights list|info`, and the download-with-a-progress-bar every `--weights`/`--pretrained` value goes through.

The work (table, cache, download, verification) is :mod:`tsn_cli.model.hub`; this module only shows it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tsn_cli.cli import common as C

weights_app = typer.Typer(
    no_args_is_help=True, help="Known pretrained weights, the download cache, and what a checkpoint holds."
)


@weights_app.command("list")
def list_weights(json_out: C.JsonOpt = False) -> None:
    """Known weights names, their URLs ($TSN_WEIGHTS_MIRROR applied), architecture, and what is cached.

    Use a name with --pretrained (resnet50) or --weights (tsn_k400, tsn_k400_8); more names can be added with a
    JSON file named by $TSN_WEIGHTS_TABLE. The cache is $TSN_CACHE (default ~/.cache/tsn).
    """
    from tsn_cli import ui
    from tsn_cli.model import hub

    rows = hub.cached_entries()
    if json_out:
        ui.print_json({"cache": str(hub.cache_dir()), "weights": rows})
        return
    cells = [
        (r["name"], r["architecture"], f"yes, {r['size']:,} bytes" if r["cached"] else "no", r["url"]) for r in rows
    ]
    t = ui.table(f"Known weights (cache: {hub.cache_dir()})", ["name", "architecture", "cached", "url"], cells)
    t.columns[3].overflow = "fold"  # a URL is copied from here: wrap it whole rather than cut it
    ui.console.print(t)


@weights_app.command("info")
def info(
    source: Annotated[
        str,
        typer.Argument(
            help="A weights file, a training output folder, a known name or an "
            "http(s):// URL (downloaded into the cache)."
        ),
    ],
    sha256: C.Sha256Opt = None,
    json_out: C.JsonOpt = False,
) -> None:
    """What a checkpoint is: architecture, class count, tensors, and how it loads into that architecture.

    Examples:\n
      tsn weights info tsn_k400\n
      tsn weights info output/demo/TSN_best.pdparams --json
    """
    from tsn_cli import ui
    from tsn_cli.model.hub import describe_file

    path = C.resolve_weights(source, flag="tsn weights info", sha256=sha256)
    report = describe_file(path)
    report = {"source": source, **report}
    if json_out:
        ui.print_json(report)
        return
    rows = [(k, v) for k, v in report.items()]
    ui.console.print(ui.table(f"Weights {source}", ["item", "value"], rows, paths=(1,)))

"""The live view of `tsn train`: config table, per-epoch progress bar and summary tables."""

from __future__ import annotations

import typer
from rich.progress import TextColumn

from tsn_cli import ui


def _rank0() -> bool:
    from tsn_cli.runtime import dist_info

    return dist_info()[1] == 0


EPOCH_COLUMNS = ["ep", "loss", "top1", "top5", "lr", "clip/s", "wait", "bad", "val1", "val5"]
_MIN_WIDTHS = [3, 7, 5, 5, 7, 6, 4, 3, 6, 5]  # fixed widths keep rows of separate tables aligned


def epoch_table(row: dict, header: bool = True, with_val: bool | None = None):
    """One epoch's summary as a compact table (about 72 columns wide: fits an 80-column terminal).

    ep = epoch, clip/s = training clips per second, wait = fraction of time waiting for data, bad = bad samples
    replaced so far, val1/val5 = validation top-1/top-5 (``*`` = new best). ``with_val`` keeps the val columns
    (blank) on epochs without validation, so every row of a run has the same columns; default: when the row has them.
    """
    from rich import box

    cols = list(EPOCH_COLUMNS)
    vals = [
        row["epoch"],
        f"{row['loss']:.4f}",
        f"{row['top1']:.3f}",
        f"{row['top5']:.3f}",
        f"{row['lr']:.1e}",
        f"{row['clips_per_s']:.1f}",
        f"{row['data_wait']:.0%}",
        row.get("bad_samples", 0),
    ]
    if "val_top1" in row:
        vals += [f"{row['val_top1']:.3f}" + ("*" if row.get("best") else " "), f"{row['val_top5']:.3f}"]
    elif with_val:
        vals += ["", ""]
    else:
        cols = cols[:-2]
    t = ui.table(None, cols, [vals], numeric=range(len(cols)))
    for col, w in zip(t.columns, _MIN_WIDTHS, strict=False):
        col.min_width = w
    t.box = box.SIMPLE_HEAD
    t.show_header = header
    t.pad_edge = False
    t.show_edge = False
    t.expand = False
    t.padding = (0, 1)
    return t


def run_training(
    cfg,
    *,
    weights=None,
    resume=None,
    overwrite=False,
    dry_run=False,
    json_out=False,
    reference=None,
    verbose=False,
    notes=(),
) -> None:
    """Build the trainer, show what will run, train with progress, print the outcome.

    `reference` is (config, its file name or None): the start-of-run table shows what differs from it.
    `notes`: ("info" | "warning", line) about how the config was resolved, shown first."""
    from tsn_cli.cli.common import show_config
    from tsn_cli.engine.train import Trainer, TrainHooks

    main = _rank0()
    shown = {"cols": None}
    for level, line in notes if main else ():
        if level == "warning":
            ui.warn(ui.safe(line))
        else:
            ui.info(f"[dim]{ui.safe(line)}[/]")
    if main and not json_out:
        show_config(cfg, *(reference or (None, None)), verbose=verbose)
    progress = ui.make_progress(TextColumn("{task.fields[stats]}"), disable=not main or json_out)
    task = {"id": None}

    def on_epoch_start(epoch, steps):
        if task["id"] is not None:
            progress.remove_task(task["id"])
        task["id"] = progress.add_task(f"epoch {epoch + 1}/{cfg.train.epochs}", total=steps, stats="")

    def on_step(s):
        # the bar, counts and ETA must stay on one line: fewer numbers on narrower terminals
        width = progress.console.width
        top = f"top1 {s.top1:.3f} " + (f"top5 {s.top5:.3f} " if width >= 140 else "") if width >= 100 else ""
        stats = f"loss {s.loss:.4f} {top}lr {s.lr:.1e} {s.clips_per_s:.1f} clip/s wait {s.data_wait:.0%}"
        progress.update(task["id"], completed=s.step, stats=stats)

    def on_epoch_end(row):
        if not main or json_out:
            return
        # one header per run: rows of separate tables line up (fixed column widths, same columns every epoch)
        with_val = bool(cfg.data.val_list and cfg.train.val_interval) or "val_top1" in row
        cols = tuple(EPOCH_COLUMNS if with_val else EPOCH_COLUMNS[:-2])
        progress.console.print(epoch_table(row, header=cols != shown["cols"], with_val=with_val))
        shown["cols"] = cols

    def on_message(msg):
        if not main:
            return
        if msg.startswith("warning: "):  # what will run differs from what was asked: must not look like noise
            progress.console.print(f"[yellow]warning:[/] {ui.safe(msg[len('warning: ') :])}")
        else:
            progress.console.print(f"[dim]{ui.safe(msg)}[/]")

    hooks = TrainHooks(on_epoch_start=on_epoch_start, on_step=on_step, on_epoch_end=on_epoch_end, on_message=on_message)
    trainer = Trainer(cfg, weights=weights, resume=resume, overwrite=overwrite, hooks=hooks)
    info = trainer.setup(dry_run=dry_run)
    if main and not json_out:
        rows = [(k, v) for k, v in info.items()]
        ui.err_console.print(ui.table("Training setup", ["item", "value"], rows))
    if dry_run:
        if json_out and main:
            ui.print_json({"dry_run": True, **info})
        raise typer.Exit(0)
    with progress:
        result = trainer.run()
    if main:
        summary = {
            "output": str(result.output),
            "epochs_done": result.epochs_done,
            "best_top1": result.best_top1,
            "best_epoch": result.best_epoch,
            "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
            "interrupted": result.interrupted,
            "stopped_early": result.stop_reason is not None,
            "stop_reason": result.stop_reason,
            "history": result.history,
        }
        if json_out:
            ui.print_json(summary)
        else:
            title = (
                "Training interrupted"
                if result.interrupted
                else "Training stopped early"
                if result.stop_reason
                else "Training finished"
            )
            rows = [
                (k, v)
                for k, v in summary.items()
                if k not in ("history", "stopped_early") and not (k == "stop_reason" and v is None)
            ]
            ui.console.print(ui.table(title, ["item", "value"], rows, paths=(1,)))
    if result.interrupted:
        raise typer.Exit(130)

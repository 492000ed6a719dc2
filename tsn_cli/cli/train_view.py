"""The live view of `tsn train`: config table, per-epoch progress bar and summary tables."""

from __future__ import annotations


import typer
from rich.progress import TextColumn

from tsn_cli import ui


def _rank0() -> bool:
    from tsn_cli.engine.device import dist_info

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
    vals = [row["epoch"], f"{row['loss']:.4f}", f"{row['top1']:.3f}", f"{row['top5']:.3f}", f"{row['lr']:.1e}", f"{row['clips_per_s']:.1f}", f"{row['data_wait']:.0%}", row.get("bad_samples", 0)]
    if "val_top1" in row:
        vals += [f"{row['val_top1']:.3f}" + ("*" if row.get("best") else " "), f"{row['val_top5']:.3f}"]
    elif with_val:
        vals += ["", ""]
    else:
        cols = cols[:-2]
    t = ui.table(None, cols, [vals], numeric=range(len(cols)))
    for col, w in zip(t.columns, _MIN_WIDTHS):
        col.min_width = w
    t.box = box.SIMPLE_HEAD
    t.show_header = header
    t.pad_edge = False
    t.show_edge = False
    t.expand = False
    t.padding = (0, 1)
    return t


def run_training(cfg, *, weights=None, resume=None, dry_run=False, json_out=False) -> None:
    """Build the trainer, show what will run, train with progress, print the outcome."""
    from tsn_cli.cli.common import show_config
    from tsn_cli.engine.train import Trainer, TrainHooks

    main = _rank0()
    shown = {"cols": None}
    if main and not json_out:
        show_config(cfg)
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
        if main:
            progress.console.print(f"[dim]{ui.safe(msg)}[/]")

    trainer = Trainer(cfg, weights=weights, resume=resume, hooks=TrainHooks(on_epoch_start=on_epoch_start, on_step=on_step, on_epoch_end=on_epoch_end, on_message=on_message))
    info = trainer.setup()
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
            "history": result.history,
        }
        if json_out:
            ui.print_json(summary)
        else:
            ui.console.print(ui.table("Training finished" if not result.interrupted else "Training interrupted", ["item", "value"], [(k, v) for k, v in summary.items() if k != "history"]))
    if result.interrupted:
        raise typer.Exit(130)

"""`tsn predict --results FILE`: one line per input as it finishes, resumable; the summary is the output."""

from __future__ import annotations

from contextlib import closing

from tsn_cli import ui


def predict_to_results(predictor, files: list[str], rf, *, all_scores: bool, json_out: bool, shard: str | None) -> int:
    """Predict the inputs not yet in `rf` (a `ResultsFile`), appending each result as it finishes; print the
    summary (table or --json). Returns the number of failed inputs."""
    todo = [f for f in files if f not in rf.recorded]
    already = len(files) - len(todo)
    counts = {"predicted": 0, "failed": 0, "warnings": 0}
    failed = []
    progress = ui.make_progress(transient=True, disable=json_out or len(todo) < 2)
    try:
        with progress, closing(predictor.predict(todo)) as predictions:  # closed on Ctrl-C: decoders stopped
            task = progress.add_task("predicting", total=len(todo))
            for r in predictions:
                rf.append(r.to_json(all_scores))
                if r.error is not None:
                    counts["failed"] += 1
                    failed.append((r.path, r.error))
                else:
                    counts["predicted"] += 1
                    counts["warnings"] += bool(r.warnings)
                progress.advance(task)
    finally:
        rf.close()
    doc = {"results": str(rf.path), "shard": shard, "inputs": len(files), "already_recorded": already, **counts}
    if json_out:
        ui.print_json(doc)
    else:
        rows = [
            ("results file", str(rf.path)),
            ("shard", shard or "all"),
            ("inputs", len(files)),
            ("already recorded (skipped)", already),
            ("predicted now", counts["predicted"]),
            ("failed", counts["failed"]),
            ("with warnings", counts["warnings"]),
        ]
        ui.console.print(ui.table("Results", ["", "value"], rows, paths=(1,)))
        if failed:
            ui.console.print(ui.table("Failed inputs", ["path", "error"], failed, paths=(0,)))
    return counts["failed"]

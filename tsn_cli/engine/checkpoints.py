"""Checkpoint sets in a training output folder: their names, the commit marker, saving, finding the latest,
loading one to resume, and optimizer state that loads in any process.

A checkpoint is a *set* of three files with one stem: ``STEM.pdparams`` (model), ``STEM.pdopt`` (optimizer incl.
the LR schedule) and ``STEM.state.json`` (epoch, step, best score, the partial epoch's running sums, the
schedule). The stems are ``TSN_epoch_XXXXX`` (after epoch XXXXX; PaddleVideo's names), ``TSN_best`` (best
validation top-1) and ``TSN_interrupted`` (the exact mid-epoch state a Ctrl-C leaves).

* every file is written atomically (temp file + fsync + rename), and ``.state.json`` is written LAST and removed
  FIRST: it is the commit marker, so a set without it (a kill or a full disk in the middle) is never resumed from;
* optimizer accumulators are stored under structured parameter names (``backbone.conv._conv.weight_velocity_0``)
  instead of Paddle's per-process names (``conv2d_12.w_0_velocity_0``), so a ``.pdopt`` loads into a model built
  in any process; PaddleVideo's per-process ``.pdopt`` files are still accepted;
* a set whose weights are not finite is never written.

Paddle-free at import (``engine.rundir`` uses the names); the model and optimizer are passed in.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from tsn_cli.errors import CheckpointError, ConfigError, TsnError
from tsn_cli.model.checkpoint import BEST_NAME

EPOCH_PREFIX = "TSN_epoch_"
BEST = BEST_NAME[: -len(".pdparams")]  # "TSN_best": the file `--weights FOLDER` means
INTERRUPTED = "TSN_interrupted"
MARKER = ".state.json"
SUFFIXES = (".pdparams", ".pdopt", MARKER)  # the marker last
EPOCH_RE = re.compile(rf"{EPOCH_PREFIX}(\d{{5}})\.pdparams$")
_SUFFIX_PATTERN = r"\.(pdparams|pdopt|state\.json)"
FILE_PATTERN = rf"TSN_(epoch_\d{{5}}|best|interrupted){_SUFFIX_PATTERN}"  # any file of any set
_EPOCH_FILE_RE = re.compile(rf"^{EPOCH_PREFIX}(\d{{5}}){_SUFFIX_PATTERN}$")


def epoch_stem(epoch: int) -> str:
    """``TSN_epoch_00004`` for epoch 4."""
    return f"{EPOCH_PREFIX}{epoch:05d}"


@dataclass
class RunState:
    """Where a run stands, as a set's ``.state.json`` records it beside the weights."""

    epoch: int = 0  # finished epochs
    step: int = 0  # batches done of the next epoch (a mid-epoch set), else 0
    best_top1: Optional[float] = None
    best_epoch: Optional[int] = None
    partial: Optional[dict] = None  # running sums of the unfinished epoch (`EpochMeter.to_state`)
    steps_per_epoch: Optional[int] = None
    schedule: Optional[dict] = None  # `optim.schedule_of` of the run that wrote it (None: not recorded)
    seed: Optional[int] = None


def progress_of(pdparams: Path) -> Optional[tuple[int, int]]:
    """(finished epochs, batches done in the next epoch) of a complete checkpoint set, else None."""
    state = pdparams.with_suffix(MARKER)
    if not (pdparams.is_file() and pdparams.with_suffix(".pdopt").is_file() and state.is_file()):
        return None
    try:
        meta = json.loads(state.read_text())
        return int(meta["epoch"]), int(meta.get("step", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_latest_checkpoint(output: str | Path) -> Optional[Path]:
    """The complete checkpoint in `output` furthest along: `TSN_epoch_XXXXX` or `TSN_interrupted` (mid-epoch).

    Complete = `.pdparams`, `.pdopt` and the `.state.json` commit marker all present.
    """
    best = None
    cands = [p for p in Path(output).glob(f"{EPOCH_PREFIX}*.pdparams") if EPOCH_RE.search(p.name)]
    cands.append(Path(output) / f"{INTERRUPTED}.pdparams")
    for p in cands:
        prog = progress_of(p)
        if prog is not None and (best is None or prog > best[0]):
            best = (prog, p)
    return best[1] if best else None


# ----------------------------------------------------------------------------------------- optimizer keys
def _structured_names(model) -> dict[str, str]:
    """Paddle's per-process parameter name (``conv2d_12.w_0``) -> structured name (``backbone.conv._conv.weight``)."""
    return {p.name: n for n, p in model.named_parameters()}


def _rename_accumulators(state: dict, mapping: dict[str, str]) -> dict:
    """Rename the keys of an optimizer state dict: ``<param><suffix>`` -> ``mapping[param]<suffix>``.

    Accumulator keys are ``{param_name}_{accumulator}_{i}`` (e.g. ``_velocity_0``); ``master_weights`` (AMP O2)
    is keyed by the bare name. Keys of no known parameter (``LR_Scheduler``) are kept.
    """
    names = sorted(mapping, key=len, reverse=True)  # longest first: conv2d_1 must not swallow conv2d_12

    def rename(key: str) -> str:
        if key in mapping:
            return mapping[key]
        for n in names:
            if key.startswith(n + "_"):
                return mapping[n] + key[len(n) :]
        return key

    out = {}
    for key, value in state.items():
        if key == "master_weights" and isinstance(value, dict):
            out[key] = {rename(k): v for k, v in value.items()}
        elif key == "LR_Scheduler":
            out[key] = value
        else:
            out[rename(key)] = value
    return out


def optimizer_state_for_file(optimizer, model) -> dict:
    """The optimizer's state dict with accumulators keyed by structured parameter names (process-independent)."""
    return _rename_accumulators(optimizer.state_dict(), _structured_names(model))


def optimizer_state_from_file(state: dict, model) -> dict:
    """Inverse of `optimizer_state_for_file` for the current process; per-process keys (PaddleVideo) pass through."""
    return _rename_accumulators(state, {v: k for k, v in _structured_names(model).items()})


# ----------------------------------------------------------------------------------------- the sets of a folder
class CheckpointSet:
    """The checkpoint sets of one output folder: `save`, `latest`, `last_good`, `resolve`, `load`, `prune`,
    `remove`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, stem: str) -> Path:
        """The ``.pdparams`` of set `stem` (the name a set is known by)."""
        return self.folder / f"{stem}.pdparams"

    def latest(self) -> Optional[Path]:
        """The complete set furthest along (see `find_latest_checkpoint`), or None."""
        return find_latest_checkpoint(self.folder)

    def last_good(self) -> str:
        """What a failed run leaves to resume from, for its error line: the latest set, or that there is none."""
        last = self.latest()
        if last is None:
            return f"no checkpoint was saved in {self.folder} yet"
        return f"the last good checkpoint, {last}, is intact"

    def resolve(self, resume: str | Path) -> Optional[Path]:
        """The ``.pdparams`` a ``--resume`` value means: 'auto' (or 'latest', '') the latest set, else that path."""
        if str(resume) in ("auto", "latest", ""):
            return self.latest()
        path = Path(resume)
        return path if path.suffix == ".pdparams" else path.with_suffix(".pdparams")

    def save(self, stem: str, model, optimizer, state: RunState) -> Path:
        """Write the set `stem` (marker last, after removing the old one first); returns its ``.pdparams``.

        Raises TsnError, writing nothing, when the weights are not finite.
        """
        from tsn_cli.fsutil import atomic_write_text
        from tsn_cli.model.checkpoint import save_object, save_state

        weights = {k: v.numpy() for k, v in model.state_dict().items()}
        for k, v in weights.items():
            if not bool(np.isfinite(v).all()):
                raise TsnError(
                    f"checkpoint {stem}: weights are not finite ({k}); not saving. {self.last_good()} (lower the LR)"
                )
        base = self.folder / stem
        # The old marker goes first: until the new one is written, a half-replaced set is never resumed from.
        base.with_suffix(MARKER).unlink(missing_ok=True)
        save_state(weights, base.with_suffix(".pdparams"))
        save_object(optimizer_state_for_file(optimizer, model), base.with_suffix(".pdopt"))
        meta = {
            "epoch": state.epoch,
            "step": state.step,
            "best_top1": state.best_top1,
            "best_epoch": state.best_epoch,
            "seed": state.seed,
            "steps_per_epoch": state.steps_per_epoch,
            "partial": state.partial,
            "schedule": state.schedule,
            "optimizer_keys": "structured",
            "time": time.time(),
        }
        atomic_write_text(base.with_suffix(MARKER), json.dumps(meta, indent=2))
        return base.with_suffix(".pdparams")

    def load(self, path: Path, model, optimizer, fix: str) -> RunState:
        """Restore `model` (strictly: every tensor must fit, else CheckpointError ending in `fix`) and `optimizer`
        from the set of `path`, and return its `RunState`. Errors name ``--resume`` (resuming is what loads)."""
        from tsn_cli.model.checkpoint import load_object, load_state, match_state, strict_error

        path = Path(path)
        opt_file, state_file = path.with_suffix(".pdopt"), path.with_suffix(MARKER)
        if not path.is_file() or not opt_file.is_file():
            raise ConfigError(f"--resume: {path} (and its .pdopt) not found")
        weights = load_state(path)
        shapes = {k: tuple(int(s) for s in v.shape) for k, v in model.state_dict().items()}
        values, report = match_state(shapes, weights, "full", str(path))
        err = strict_error(report, weights, model, path, fix)
        if err is not None:
            raise CheckpointError(f"--resume: {err}")
        model.set_state_dict(values)
        opt_state = load_object(opt_file)
        if not isinstance(opt_state, dict):
            raise CheckpointError(f"--resume: {opt_file} is not an optimizer state")
        optimizer.set_state_dict(optimizer_state_from_file(opt_state, model))
        try:
            meta = json.loads(state_file.read_text()) if state_file.is_file() else {}
        except ValueError as exc:
            raise CheckpointError(f"--resume: {state_file}: not valid JSON ({exc})") from None
        m = EPOCH_RE.search(path.name)  # a PaddleVideo set has no .state.json: its name says the epoch
        return RunState(
            epoch=int(meta.get("epoch", int(m.group(1)) if m else 0)),
            step=int(meta.get("step", 0)),
            best_top1=meta.get("best_top1"),
            best_epoch=meta.get("best_epoch"),
            partial=meta.get("partial"),
            steps_per_epoch=meta.get("steps_per_epoch"),
            schedule=meta.get("schedule"),
            seed=meta.get("seed"),
        )

    def prune(self, keep_last: int, newest: int) -> list[str]:
        """Keep the `keep_last` latest epoch sets up to epoch `newest` (the one just written) and remove the older
        ones; returns their stems. `TSN_best` and `TSN_interrupted` are other stems, and sets after `newest` (left
        by a run resumed from an earlier epoch; this run writes them again) are not touched."""
        epochs = sorted({int(m.group(1)) for p in self.folder.iterdir() if (m := _EPOCH_FILE_RE.match(p.name))})
        older = [e for e in epochs if e <= newest]
        gone = [epoch_stem(e) for e in older[: max(0, len(older) - max(1, keep_last))]]
        for stem in gone:
            self.remove(stem)
        return gone

    def remove(self, stem: str) -> None:
        """Delete set `stem`, its marker first (a kill in between leaves an incomplete set, never resumed from)."""
        for suffix in reversed(SUFFIXES):
            (self.folder / (stem + suffix)).unlink(missing_ok=True)

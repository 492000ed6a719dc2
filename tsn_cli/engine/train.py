"""Training: PaddleVideo's TSN recipe with Paddle's own optimizer, schedule, clipping and regularizer.

Crash safety and exact resume:

* every checkpoint file is written atomically (temp file + fsync + rename); a checkpoint is the set
  ``STEM.pdparams`` (model), ``STEM.pdopt`` (optimizer incl. the LR schedule) and ``STEM.state.json`` (epoch,
  step, best score, partial epoch metrics), and ``.state.json`` is written LAST: it is the commit marker, so a
  set without it (a kill or a full disk in the middle) is never resumed from;
* all randomness is a function of (seed, epoch, step): the data pipeline draws from
  ``default_rng([seed, epoch, index])`` and Paddle's generator (dropout) is re-seeded before every batch, so no
  RNG state has to be carried -- resuming from any step boundary replays the rest bit for bit (CPU);
* optimizer accumulators are stored under structured parameter names (``backbone.conv._conv.weight_velocity_0``)
  instead of Paddle's per-process names (``conv2d_12.w_0_velocity_0``), so a ``.pdopt`` loads into a model built
  in any process; PaddleVideo's per-process ``.pdopt`` files are still accepted;
* Ctrl-C (SIGINT) does not abort mid-step: it sets a flag, the loop stops at the next optimizer-step boundary,
  writes ``TSN_interrupted.*`` (the exact mid-epoch state) and returns ``interrupted=True`` (the CLI exits 130).
  ``--resume auto`` picks whichever checkpoint is furthest along and skips the batches already done. A second
  Ctrl-C aborts at once (the previous checkpoints stay intact);
* a non-finite loss stops the run (TsnError naming epoch and step) before it reaches the weights, and a
  checkpoint whose weights are not finite is never written.

Distributed (``python -m paddle.distributed.launch ... -m tsn_cli train``): the batch sampler shards the data by
rank, gradients are all-reduced by ``paddle.DataParallel``, epoch metrics are all-reduced, and only rank 0 writes
checkpoints, logs, curves and progress.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tsn_cli.config import CONFIG_NAME, RunConfig, save_config
from tsn_cli.errors import ConfigError, TsnError

CKPT_RE = re.compile(r"TSN_epoch_(\d{5})\.pdparams$")
INTERRUPTED = "TSN_interrupted"  # stem of the mid-epoch checkpoint written on Ctrl-C


def step_seed(seed: int, epoch: int, step: int) -> int:
    """Paddle's generator seed for batch `step` of `epoch` (dropout): a pure function, so resume needs no RNG state."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(step)]).generate_state(1)[0] & 0x7FFFFFFF)


def lr_boundaries(cfg: RunConfig) -> list[int]:
    """Epochs at which the LR drops: the config's, else 1/3 and 2/3 of the epochs (PaddleVideo: 40, 80 of 120)."""
    t = cfg.train
    if t.lr_boundaries:
        return sorted(int(b) for b in t.lr_boundaries)
    return sorted({max(1, round(t.epochs / 3)), max(1, round(2 * t.epochs / 3))})


def base_lr(cfg: RunConfig, world_size: int = 1) -> float:
    """The configured LR, linearly scaled by global batch / base_batch_size with `auto_scale_lr`."""
    t = cfg.train
    if not t.auto_scale_lr:
        return t.lr
    return t.lr * (t.batch_size * world_size * t.accum_steps) / t.base_batch_size


def build_schedule(cfg: RunConfig, steps_per_epoch: int, world_size: int = 1):
    """Piecewise decay stepped per optimizer step, optionally behind a linear warmup from 0.

    The LR of optimizer step ``i`` (0-based) is ``lr0 * decay**k`` with ``k`` = number of boundaries ``b`` with
    ``i >= b * steps_per_epoch`` -- boundaries are absolute epochs, also with warmup (Paddle's LinearWarmup
    restarts the inner schedule's counter after the warmup, so the inner boundaries are shifted back by it).
    During warmup (``warmup_epochs * steps_per_epoch`` steps) the LR rises linearly ``lr0 * i / warm``.
    """
    from tsn_cli.engine.device import import_paddle

    paddle = import_paddle()
    lr0 = base_lr(cfg, world_size)
    warm = int(round(cfg.train.warmup_epochs * steps_per_epoch))
    bounds = [max(1, b * steps_per_epoch - warm) for b in lr_boundaries(cfg)]
    values = [lr0 * cfg.train.lr_decay**i for i in range(len(bounds) + 1)]
    sched = paddle.optimizer.lr.PiecewiseDecay(boundaries=bounds, values=values)
    if warm > 0:
        sched = paddle.optimizer.lr.LinearWarmup(learning_rate=sched, warmup_steps=warm, start_lr=0.0, end_lr=lr0)
    return sched


def optimizer_steps_per_epoch(batches: int, accum_steps: int) -> int:
    """Optimizer steps in an epoch of ``batches`` batches: a trailing partial accumulation group also steps."""
    return max(1, math.ceil(batches / max(1, accum_steps)))


def build_optimizer(cfg: RunConfig, model, sched):
    """Momentum + L2 decay on every parameter + global-norm clipping (PaddleVideo's TSN settings)."""
    from tsn_cli.engine.device import import_paddle

    paddle = import_paddle()
    t = cfg.train
    clip = paddle.nn.ClipGradByGlobalNorm(t.grad_clip) if t.grad_clip else None
    return paddle.optimizer.Momentum(
        learning_rate=sched,
        momentum=t.momentum,
        parameters=model.parameters(),
        weight_decay=paddle.regularizer.L2Decay(t.weight_decay) if t.weight_decay else None,
        grad_clip=clip,
        multi_precision=cfg.runtime.amp is not None and cfg.runtime.amp_level == "O2",
    )


def _progress_of(pdparams: Path) -> Optional[tuple[int, int]]:
    """(finished epochs, batches done in the next epoch) of a complete checkpoint set, else None."""
    state = pdparams.with_suffix(".state.json")
    if not (pdparams.is_file() and pdparams.with_suffix(".pdopt").is_file() and state.is_file()):
        return None
    try:
        meta = json.loads(state.read_text())
        return int(meta["epoch"]), int(meta.get("step", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_latest_checkpoint(output: Path) -> Optional[Path]:
    """The complete checkpoint in `output` furthest along: `TSN_epoch_XXXXX` or `TSN_interrupted` (mid-epoch).

    Complete = `.pdparams`, `.pdopt` and the `.state.json` commit marker all present.
    """
    best = None
    cands = [p for p in Path(output).glob("TSN_epoch_*.pdparams") if CKPT_RE.search(p.name)]
    cands.append(Path(output) / f"{INTERRUPTED}.pdparams")
    for p in cands:
        prog = _progress_of(p)
        if prog is not None and (best is None or prog > best[0]):
            best = (prog, p)
    return best[1] if best else None


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
                return mapping[n] + key[len(n):]
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


def seed_everything(seed: int) -> None:
    """Seed python, numpy and paddle."""
    import random

    from tsn_cli.engine.device import import_paddle

    random.seed(seed)
    np.random.seed(seed % (2**32))
    import_paddle().seed(seed)


@dataclass
class StepStats:
    """Live numbers of the running epoch (what the progress display shows)."""

    epoch: int
    step: int
    steps: int
    loss: float
    top1: float
    top5: float
    lr: float
    clips_per_s: float
    data_wait: float


@dataclass
class TrainHooks:
    """Callbacks the CLI uses to draw progress; all optional."""

    on_start: Callable[[dict], None] = lambda info: None
    on_epoch_start: Callable[[int, int], None] = lambda epoch, steps: None
    on_step: Callable[[StepStats], None] = lambda s: None
    on_epoch_end: Callable[[dict], None] = lambda row: None
    on_message: Callable[[str], None] = lambda msg: None


@dataclass
class TrainResult:
    """What a training run produced."""

    output: Path
    epochs_done: int
    best_top1: Optional[float]
    best_epoch: Optional[int]
    last_checkpoint: Optional[Path]
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False


class _SkipSampler:
    """Wraps the loader's `EpochBatchSampler`: the next pass skips its first `skip` batches (mid-epoch resume).

    Skipping happens on the index lists, so the skipped batches are never decoded.
    """

    def __init__(self, inner):
        self.inner = inner
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __iter__(self):
        skip, self.skip = self.skip, 0
        for i, batch in enumerate(self.inner):
            if i >= skip:
                yield batch

    def __len__(self) -> int:
        return len(self.inner)


def _fault_point() -> Optional[tuple[int, int, int]]:
    """Fault injection for the crash tests: ``TSN_FAULT_AT=SIGNAL:EPOCH:STEP`` (1-based epoch, optimizer step).

    The process sends itself SIGNAL (``SIGKILL``, ``SIGINT``, ...) right after that optimizer step.
    """
    spec = os.environ.get("TSN_FAULT_AT", "")
    if not spec:
        return None
    import signal

    name, epoch, step = spec.split(":")
    return int(getattr(signal, name)), int(epoch), int(step)


class Trainer:
    """One training run of `cfg`; `run()` does the epochs. Usable from Python without the CLI."""

    def __init__(self, cfg: RunConfig, *, weights: Optional[Path] = None, resume: Optional[str | Path] = None, hooks: Optional[TrainHooks] = None):
        self.cfg = cfg
        self.weights = weights
        self.resume = resume
        self.hooks = hooks or TrainHooks()
        self.output = Path(cfg.runtime.output)
        from tsn_cli.engine.device import dist_info

        self.world, self.rank = dist_info()
        self.stop_requested = False
        self.start_step = 0
        self._partial: Optional[dict] = None
        self._fault = _fault_point()
        self._vdl = None

    # ----------------------------------------------------------------------------------------- setup
    def setup(self) -> dict:
        """Build everything and return a description (model size, data counts); no training step runs."""
        from tsn_cli.engine import build
        from tsn_cli.engine.device import import_paddle, resolve_device
        from tsn_cli.model.flops import model_size

        cfg = self.cfg
        self.paddle = paddle = import_paddle(cfg.runtime.threads)
        import warnings

        # BatchNorm's one-time "we now always track global mean and variance" notice is noise for a user
        warnings.filterwarnings("ignore", message="When training, we now always track")
        self.device = resolve_device(cfg.runtime.device)
        if cfg.runtime.amp and not self.device.startswith("gpu"):
            self.hooks.on_message("--amp needs a GPU; running in float32 on the CPU")
            self.amp = None
        else:
            self.amp = cfg.runtime.amp
        if self.world > 1:
            import paddle.distributed as dist

            dist.init_parallel_env()
        seed_everything(cfg.runtime.seed)

        train_read = build.read_records(cfg, cfg.data.train_list, "data.train_list")
        for msg in train_read.bad_lines:
            self.hooks.on_message(f"skipped {msg}")
        if not train_read.records:
            raise TsnError(f"data.train_list: no usable lines in {cfg.data.train_list}")
        self.train_records = train_read.records
        self.val_records = None
        if cfg.data.val_list is not None and cfg.train.val_interval > 0:
            val_read = build.read_records(cfg, cfg.data.val_list, "data.val_list")
            for msg in val_read.bad_lines:
                self.hooks.on_message(f"skipped {msg}")
            self.val_records = val_read.records or None

        self.model = build.build_model(cfg)
        if cfg.model.pretrained:
            from tsn_cli.model.checkpoint import load_weights

            rep = load_weights(self.model, cfg.model.pretrained, part="backbone")
            self.hooks.on_message(f"pretrained {cfg.model.pretrained}: {rep.summary()}")
        if self.weights:
            from tsn_cli.model.checkpoint import load_weights

            rep = load_weights(self.model, self.weights, part="full")
            self.hooks.on_message(f"weights {self.weights}: {rep.summary()}")

        self.train_set = build.train_dataset(cfg, self.train_records)
        from tsn_cli.data.dataset import build_loader

        self.train_loader = build_loader(
            self.train_set, batch_size=cfg.train.batch_size, shuffle=True, workers=cfg.runtime.workers, seed=cfg.runtime.seed, drop_last=len(self.train_records) >= cfg.train.batch_size * self.world, distributed=self.world > 1
        )
        # Paddle's DataLoader reads `batch_sampler` when an iteration starts, so the wrapper takes effect there.
        self.sampler = _SkipSampler(self.train_loader.batch_sampler)
        self.train_loader.batch_sampler = self.sampler
        self.steps_per_epoch = optimizer_steps_per_epoch(len(self.train_loader), cfg.train.accum_steps)
        self.sched = build_schedule(cfg, self.steps_per_epoch, self.world)
        self.optimizer = build_optimizer(cfg, self.model, self.sched)
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**16, incr_every_n_steps=2000, decr_every_n_nan_or_inf=1) if self.amp == "fp16" else None
        if self.amp:  # decorate before DataParallel wraps the model (O2 casts the parameters in place)
            self.model, self.optimizer = paddle.amp.decorate(models=self.model, optimizers=self.optimizer, level=cfg.runtime.amp_level, dtype="float16" if self.amp == "fp16" else "bfloat16", master_weight=True)
        self.net = paddle.DataParallel(self.model) if self.world > 1 else self.model

        size = model_size(cfg.model.depth, cfg.model.num_classes, cfg.model.seg_num, cfg.augment.target_size)
        self.start_epoch, self.best_top1, self.best_epoch = 0, None, None
        if self.resume:
            self._restore(self.resume)
        return {
            "device": self.device,
            "world_size": self.world,
            "train_videos": len(self.train_records),
            "val_videos": len(self.val_records or []),
            "steps_per_epoch": self.steps_per_epoch,
            "start_epoch": self.start_epoch,
            "start_step": self.start_step,
            "lr": base_lr(cfg, self.world),
            "lr_boundaries": lr_boundaries(cfg),
            **size,
        }

    # ----------------------------------------------------------------------------------------- checkpoints
    def _restore(self, resume: str | Path) -> None:
        """Load model, optimizer (+ LR schedule), epoch/step, best score and partial epoch metrics."""
        from tsn_cli.errors import CheckpointError
        from tsn_cli.model.checkpoint import load_object, load_state

        path = find_latest_checkpoint(self.output) if str(resume) in ("auto", "latest", "") else Path(resume)
        if path is None:
            self.hooks.on_message(f"no checkpoint to resume in {self.output}; starting from epoch 1")
            return
        path = Path(path)
        if path.suffix != ".pdparams":
            path = path.with_suffix(".pdparams")
        state_file = path.with_suffix(".state.json")
        if not path.is_file() or not path.with_suffix(".pdopt").is_file():
            raise ConfigError(f"--resume: {path} (and its .pdopt) not found")
        state = load_state(path)
        shapes = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        bad = [k for k in shapes if k not in state or tuple(state[k].shape) != shapes[k]]
        if bad:
            raise CheckpointError(f"--resume: {path} does not fit this model ({len(bad)} tensors missing or of another shape, e.g. {bad[0]}); same config?")
        self.model.set_state_dict(state)
        opt_state = load_object(path.with_suffix(".pdopt"))
        if not isinstance(opt_state, dict):
            raise CheckpointError(f"--resume: {path.with_suffix('.pdopt')} is not an optimizer state")
        self.optimizer.set_state_dict(optimizer_state_from_file(opt_state, self.model))
        try:
            meta = json.loads(state_file.read_text()) if state_file.is_file() else {}
        except ValueError as exc:
            raise CheckpointError(f"--resume: {state_file}: not valid JSON ({exc})") from None
        m = CKPT_RE.search(path.name)
        self.start_epoch = int(meta.get("epoch", int(m.group(1)) if m else 0))
        self.start_step = int(meta.get("step", 0))
        self._partial = meta.get("partial")
        self.best_top1 = meta.get("best_top1")
        self.best_epoch = meta.get("best_epoch")
        if self.start_step and meta.get("steps_per_epoch") not in (None, self.steps_per_epoch):
            self.hooks.on_message(f"warning: {path} was written with {meta['steps_per_epoch']} steps per epoch, this run has {self.steps_per_epoch} (batch size or data changed?): the resumed epoch will not match")
        where = f"epoch {self.start_epoch} done" + (f", {self.start_step} batches of epoch {self.start_epoch + 1}" if self.start_step else "")
        self.hooks.on_message(f"resumed from {path} ({where})")

    def _check_finite_weights(self, what: str) -> None:
        for k, v in self.model.state_dict().items():
            if not bool(np.isfinite(v.numpy()).all()):
                raise TsnError(f"{what}: weights are not finite ({k}); not saving. The last good checkpoint in {self.output} is intact (lower the LR)")

    def _save(self, stem: str, epoch: int, step: int = 0, partial: Optional[dict] = None) -> Path:
        """Write stem.pdparams / .pdopt / .state.json atomically (rank 0 only); .state.json last (commit marker)."""
        from tsn_cli.fsutil import atomic_write_text
        from tsn_cli.model.checkpoint import save_object, save_state

        self._check_finite_weights(f"checkpoint {stem}")
        base = self.output / stem
        # The old marker goes first: until the new one is written, a half-replaced set is never resumed from.
        base.with_suffix(".state.json").unlink(missing_ok=True)
        save_state({k: v.numpy() for k, v in self.model.state_dict().items()}, base.with_suffix(".pdparams"))
        save_object(optimizer_state_for_file(self.optimizer, self.model), base.with_suffix(".pdopt"))
        meta = {
            "epoch": epoch, "step": step, "best_top1": self.best_top1, "best_epoch": self.best_epoch,
            "seed": self.cfg.runtime.seed, "steps_per_epoch": self.steps_per_epoch, "partial": partial,
            "optimizer_keys": "structured", "time": time.time(),
        }
        atomic_write_text(base.with_suffix(".state.json"), json.dumps(meta, indent=2))
        return base.with_suffix(".pdparams")

    def _write_run_files(self) -> None:
        from tsn_cli.engine.build import label_names
        from tsn_cli.fsutil import atomic_write_text

        self.output.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.output / CONFIG_NAME)
        names = label_names(self.cfg)
        atomic_write_text(self.output / "label_names.txt", "".join(f"{i} {n}\n" for i, n in enumerate(names)))

    # ----------------------------------------------------------------------------------------- distributed
    def _all_sum(self, values: list[float]) -> list[float]:
        """Sum `values` over all ranks (identity on one process)."""
        if self.world <= 1:
            return values
        import paddle.distributed as dist

        t = self.paddle.to_tensor(np.asarray(values, dtype="float64"))
        dist.all_reduce(t)
        return [float(x) for x in t.numpy()]

    # ----------------------------------------------------------------------------------------- loop
    def _epoch(self, epoch: int) -> Optional[dict]:
        """Train one epoch (from `start_step` when resuming); None when stopped by Ctrl-C (checkpoint written)."""
        import paddle.nn.functional as F

        paddle, cfg = self.paddle, self.cfg
        start = self.start_step if epoch == self.start_epoch else 0
        self.train_set.set_epoch(epoch) if hasattr(self.train_set, "set_epoch") else None
        self.sampler.set_epoch(epoch)
        self.sampler.skip = start
        self.net.train()
        n_batches = len(self.train_loader)
        self.hooks.on_epoch_start(epoch, n_batches)
        p = self._partial if (start and self._partial) else {}
        tot_loss, tot_c1, tot_c5, tot_n = (float(p.get(k, 0.0)) for k in ("loss", "c1", "c5", "n"))
        wait, busy = float(p.get("wait", 0.0)), float(p.get("busy", 0.0))
        lr_used = float(self.optimizer.get_lr())
        t_last = time.perf_counter()
        accum = cfg.train.accum_steps
        for step, batch in enumerate(self.train_loader, start=start):
            t_data = time.perf_counter()
            wait += t_data - t_last
            clips, labels = batch[0], batch[1]
            labels = labels.reshape([-1, 1]).astype("int64")
            if hasattr(self.train_set, "collect"):
                for path, reason in self.train_set.collect(batch[2], batch[3]):
                    self.hooks.on_message(f"bad sample replaced: {path}: {reason}")
            # Dropout draws from Paddle's global generator: re-seed it per batch so any step can be replayed.
            paddle.seed(step_seed(cfg.runtime.seed, epoch, step))
            with paddle.amp.auto_cast(enable=self.amp is not None, level=cfg.runtime.amp_level, dtype="float16" if self.amp == "fp16" else "bfloat16"):
                logits = self.net(clips)
                loss = F.cross_entropy(logits.astype("float32"), labels)
            loss_v = float(loss.item())
            bad_loss = not math.isfinite(loss_v)
            if self.world > 1:  # every rank must stop together, or the others hang in the gradient all-reduce
                bad_loss = self._all_sum([0.0 if math.isfinite(loss_v) else 1.0])[0] > 0
            if bad_loss:
                raise TsnError(f"loss is {loss_v} at epoch {epoch + 1}, step {step + 1}/{n_batches}: stopping; the last good checkpoint in {self.output} is intact (lower the LR or check the data)")
            group_start = step - step % accum
            group = min(accum, n_batches - group_start)  # a trailing partial group is averaged over its own size
            scaled = loss / group
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
            boundary = step + 1 - group_start == group
            if boundary:
                lr_used = float(self.optimizer.get_lr())
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.optimizer.clear_grad()
                self.sched.step()
            n = int(clips.shape[0])
            lg = logits.astype("float32").detach()
            acc1 = paddle.metric.accuracy(lg, labels, k=1).item()
            acc5 = paddle.metric.accuracy(lg, labels, k=min(5, cfg.model.num_classes)).item()
            tot_loss += loss_v * n
            tot_c1 += acc1 * n
            tot_c5 += acc5 * n
            tot_n += n
            t_last = time.perf_counter()
            busy += t_last - t_data
            self.hooks.on_step(
                StepStats(epoch, step + 1, n_batches, tot_loss / tot_n, tot_c1 / tot_n, tot_c5 / tot_n, lr_used, tot_n / max(wait + busy, 1e-9), wait / max(wait + busy, 1e-9))
            )
            if boundary:
                if self._fault and (self._fault[1], self._fault[2]) == (epoch + 1, step + 1):
                    os.kill(os.getpid(), self._fault[0])
                    time.sleep(0.5)  # let the signal arrive (SIGINT sets the flag through the handler)
                stop = self.stop_requested
                if self.world > 1:
                    stop = self.stop_requested = self._all_sum([1.0 if stop else 0.0])[0] > 0
                if stop and step + 1 < n_batches:
                    partial = {"loss": tot_loss, "c1": tot_c1, "c5": tot_c5, "n": tot_n, "wait": wait, "busy": busy}
                    if self.rank == 0:
                        self._last = self._save(INTERRUPTED, epoch, step + 1, partial)
                    self.hooks.on_message(f"interrupted at epoch {epoch + 1}, batch {step + 1}/{n_batches}: saved {self.output / INTERRUPTED}.pdparams; continue with --resume auto")
                    return None
        self.start_step, self._partial = 0, None
        bad = self.train_set.bad_samples() if hasattr(self.train_set, "bad_samples") else {}
        tot_loss, tot_c1, tot_c5, tot_n, wait, busy = self._all_sum([tot_loss, tot_c1, tot_c5, tot_n, wait, busy])
        wait, busy = wait / self.world, busy / self.world
        return {
            "epoch": epoch + 1,
            "loss": tot_loss / max(tot_n, 1),
            "top1": tot_c1 / max(tot_n, 1),
            "top5": tot_c5 / max(tot_n, 1),
            "lr": lr_used,
            "clips": int(tot_n),
            "clips_per_s": tot_n / max(wait + busy, 1e-9),
            "data_wait": wait / max(wait + busy, 1e-9),
            "bad_samples": len(bad),
            "time_s": wait + busy,
        }

    def validate(self) -> dict:
        """1 view, centre crop, the config's seg_num: top-1/top-5 on the val list (bad videos excluded)."""
        from tsn_cli.data.dataset import build_loader
        from tsn_cli.engine import build
        from tsn_cli.engine.evaluate import score_loader

        cfg = self.cfg
        ds = build.eval_dataset(cfg, self.val_records, seg_num=cfg.model.seg_num, crops=1)
        loader = build_loader(ds, batch_size=cfg.eval.batch_size, shuffle=False, workers=cfg.runtime.workers, seed=cfg.runtime.seed, drop_last=False)
        scores, labels, _, ok = score_loader(self.model, loader, 1, cfg.eval.max_views_per_batch, "logits", num_classes=cfg.model.num_classes)
        from tsn_cli.engine import metrics as M

        scores, labels = scores[ok], labels[ok]
        return {"val_top1": M.topk_accuracy(scores, labels, 1), "val_top5": M.topk_accuracy(scores, labels, 5), "val_videos": int(len(labels)), "val_unreadable": int((~ok).sum())}

    # ----------------------------------------------------------------------------------------- logging (rank 0)
    def _log_epoch(self, row: dict) -> None:
        """metrics.jsonl line, curves PNG and VisualDL scalars for one finished epoch."""
        from tsn_cli.engine.curves import read_metrics, write_curves
        from tsn_cli.fsutil import append_line

        append_line(self.output / "metrics.jsonl", json.dumps(row))
        try:
            write_curves(read_metrics(self.output / "metrics.jsonl"), self.output / "curves.png")
        except TsnError as exc:  # a plot must never stop training
            self.hooks.on_message(f"curves not drawn: {exc}")
        if self._vdl is None:
            try:
                from visualdl import LogWriter  # optional dependency
            except ImportError:
                self._vdl = False
            else:
                self._vdl = LogWriter(logdir=str(self.output / "vdl"))
        if self._vdl:
            for key in ("loss", "top1", "top5", "lr", "clips_per_s", "data_wait", "val_top1", "val_top5"):
                if isinstance(row.get(key), (int, float)):
                    self._vdl.add_scalar(tag=f"{'val' if key.startswith('val') else 'train'}/{key}", step=row["epoch"], value=float(row[key]))
            if hasattr(self._vdl, "flush"):
                self._vdl.flush()

    def _write_digest(self) -> None:
        """With TSN_WEIGHTS_DIGEST_DIR set, every rank writes rank<N>.sha256 of its trainable parameters.

        (Used by the distributed test. BatchNorm running statistics are per-rank buffers -- as in PaddleVideo,
        which has no SyncBN for TSN -- so they are not part of the digest; rank 0's are the ones saved.)
        """
        out = os.environ.get("TSN_WEIGHTS_DIGEST_DIR")
        if not out:
            return
        import hashlib

        h = hashlib.sha256()
        for k, v in sorted(self.model.named_parameters()):
            if v.stop_gradient:  # BN _mean/_variance are registered as non-trainable parameters
                continue
            h.update(k.encode())
            h.update(np.ascontiguousarray(v.numpy()).tobytes())
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"rank{self.rank}.sha256").write_text(h.hexdigest())

    def _install_sigint(self):
        """First Ctrl-C (or SIGTERM, as a scheduler or paddle.distributed.launch sends): stop at the next step
        boundary with a checkpoint; a second one aborts now. Returns the previous handlers."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            self.hooks.on_message("stopping after this step and saving a checkpoint (Ctrl-C again aborts)")

        return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def run(self) -> TrainResult:
        """Train from `start_epoch`/`start_step` to `train.epochs`; Ctrl-C saves the exact mid-epoch state."""
        import signal

        if not hasattr(self, "model"):
            info = self.setup()
            self.hooks.on_start(info)
        cfg = self.cfg
        main = self.rank == 0
        if main:
            self._write_run_files()
        history: list[dict] = []
        self._last = None
        epoch = self.start_epoch
        old = self._install_sigint()
        try:
            for epoch in range(self.start_epoch, cfg.train.epochs):
                row = self._epoch(epoch)
                if row is None:
                    return TrainResult(self.output, epoch, self.best_top1, self.best_epoch, self._last, history, interrupted=True)
                last_epoch = epoch + 1 == cfg.train.epochs
                if self.val_records and cfg.train.val_interval and ((epoch + 1) % cfg.train.val_interval == 0 or last_epoch):
                    row.update(self.validate())
                    if self.best_top1 is None or row["val_top1"] > self.best_top1:
                        self.best_top1, self.best_epoch = row["val_top1"], epoch + 1
                        row["best"] = True
                        if main:
                            self._save("TSN_best", epoch + 1)
                if main and ((epoch + 1) % cfg.train.save_interval == 0 or last_epoch or self.stop_requested):
                    self._last = self._save(f"TSN_epoch_{epoch + 1:05d}", epoch + 1)
                    # an epoch checkpoint supersedes an older mid-epoch one
                    for suffix in (".state.json", ".pdparams", ".pdopt"):
                        (self.output / (INTERRUPTED + suffix)).unlink(missing_ok=True)
                if main and self.val_records is None and last_epoch:
                    self._save("TSN_best", epoch + 1)
                if main:
                    self._log_epoch(row)
                history.append(row)
                self.hooks.on_epoch_end(row)
                if self.stop_requested and not last_epoch:
                    self.hooks.on_message(f"interrupted after epoch {epoch + 1}: saved {self._last}; continue with --resume auto")
                    return TrainResult(self.output, epoch + 1, self.best_top1, self.best_epoch, self._last, history, interrupted=True)
        except KeyboardInterrupt:
            self.hooks.on_message(f"aborted in epoch {epoch + 1}; the checkpoints in {self.output} are intact")
            return TrainResult(self.output, epoch, self.best_top1, self.best_epoch, find_latest_checkpoint(self.output), history, interrupted=True)
        finally:
            for sig, prev in (old or {}).items():
                signal.signal(sig, prev)
            if self._vdl:
                self._vdl.close()
        self._write_digest()
        return TrainResult(self.output, cfg.train.epochs, self.best_top1, self.best_epoch, self._last or find_latest_checkpoint(self.output), history)

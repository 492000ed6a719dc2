"""Training: the `Trainer` builds a run from its config and runs the epoch loop; `engine.trainrun` holds its
callbacks and result. The recipe is in `engine.optim`, checkpoint sets in `engine.checkpoints`, running sums in
`engine.meter`, validation in `engine.evaluate.validate`, logs in `engine.runlog`, the output folder in
`engine.rundir`, stopping in `engine.stopping`, fine-tuning controls in `engine.finetune`, seeds in `engine.seeding`.

Exact resume:

* checkpoints are crash-safe sets with a commit marker (see `engine.checkpoints`);
* all randomness is a function of (seed, epoch, step): the data pipeline draws from
  ``default_rng([seed, epoch, index])`` and Paddle's generator (dropout) is re-seeded before every batch, so no
  RNG state has to be carried -- resuming from any step boundary replays the rest bit for bit (CPU); the epoch
  sampler leaves out the batches already done (``set_epoch(epoch, skip=n)``);
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

import math
import time
from pathlib import Path
from typing import Optional

import numpy as np

from tsn_cli.config import CONFIG_NAME, RunConfig
from tsn_cli.engine import optim
from tsn_cli.engine.checkpoints import BEST, INTERRUPTED, CheckpointSet, RunState, epoch_stem
from tsn_cli.engine.finetune import FineTune
from tsn_cli.engine.meter import EpochMeter
from tsn_cli.engine.rundir import start_run
from tsn_cli.engine.runlog import EpochLog
from tsn_cli.engine.seeding import seed_everything, step_seed  # noqa: F401 (re-exported: tests, benchmarks)
from tsn_cli.engine.stopping import StopRequest, patience_reason
from tsn_cli.engine.trainrun import TrainHooks, TrainResult  # noqa: F401 (the public names of a run)
from tsn_cli.errors import TsnError


class Trainer:
    """One training run of `cfg`; `run()` does the epochs. Usable from Python without the CLI."""

    def __init__(
        self,
        cfg: RunConfig,
        *,
        weights: Optional[Path] = None,
        resume: Optional[str | Path] = None,
        overwrite: bool = False,
        hooks: Optional[TrainHooks] = None,
    ):
        self.cfg = cfg
        self.weights = weights
        self.resume = resume
        self.overwrite = overwrite  # remove the previous run's files from the output folder before writing
        self.hooks = hooks or TrainHooks()
        self.output = Path(cfg.runtime.output)
        self.ckpts = CheckpointSet(self.output)
        from tsn_cli.runtime import dist_info

        self.world, self.rank = dist_info()
        self.stop = StopRequest(self.hooks.on_message)
        self.start_step = 0
        self._partial: Optional[dict] = None
        self.log = EpochLog(self.output, self.hooks.on_message)

    # ----------------------------------------------------------------------------------------- setup
    def setup(self, dry_run: bool = False) -> dict:
        """Build everything and return a description (model size, data counts); no training step runs.

        A used output folder (see `engine.rundir`) is refused unless resuming or overwriting; with `dry_run`
        (nothing will be written) that is only a warning.
        """
        from tsn_cli.model.flops import model_size

        cfg = self.cfg
        from tsn_cli.engine.rundir import check_output_or_warn

        check_output_or_warn(self.output, self.resume, self.overwrite, dry_run, self.hooks.on_message)
        self._init_runtime()
        self._read_lists()
        self._build_model()
        self._build_training()
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
            "lr": optim.base_lr(cfg, self.world),
            "lr_boundaries": optim.lr_boundaries(cfg),
            **size,
        }

    def _init_runtime(self) -> None:
        """Paddle with the configured threads, the device, AMP, the process group and the seeds."""
        import warnings

        from tsn_cli.runtime import import_paddle, resolve_device

        cfg = self.cfg
        self.paddle = import_paddle(cfg.runtime.threads)
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

    def _read_lists(self) -> None:
        from tsn_cli.engine import build

        cfg = self.cfg
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

    def _build_model(self) -> None:
        """The model, with `model.pretrained` (backbone) and `--weights` (fine-tuning) loaded."""
        from tsn_cli.engine import build
        from tsn_cli.model.checkpoint import load_weights

        cfg = self.cfg
        self.model = build.build_model(cfg)
        if cfg.model.pretrained and cfg.model.pretrained.strip().lower() != "none":
            from tsn_cli.model.hub import resolve_value

            # `tsn train` has already fetched a name or URL (with a progress bar); the Python API has not
            pretrained, _ = resolve_value(cfg.model.pretrained)
            rep = load_weights(self.model, pretrained, part="backbone")
            self.hooks.on_message(f"pretrained {pretrained}: {rep.finetune_note()}")
        if self.weights:
            # fine-tuning may leave tensors out (a new class count needs a new head); the note says which and why
            rep = load_weights(self.model, self.weights, part="full")
            self.hooks.on_message(f"fine-tuning from {self.weights}: {rep.finetune_note()}")

    def _build_training(self) -> None:
        """Dataset and loader, schedule and optimizer, AMP and the data-parallel wrapper."""
        from tsn_cli.data.dataset import build_loader
        from tsn_cli.engine import build

        cfg, paddle = self.cfg, self.paddle
        self.train_set = build.train_dataset(cfg, self.train_records)
        self.tune = FineTune(
            cfg,
            self.model,
            [r.label for r in self.train_records],
            self.hooks.on_message,
            validating=self.val_records is not None,
        )
        drop_last = len(self.train_records) >= cfg.train.batch_size * self.world
        self.train_loader = build_loader(
            self.train_set,
            batch_size=cfg.train.batch_size,
            shuffle=True,
            workers=cfg.runtime.workers,
            seed=cfg.runtime.seed,
            drop_last=drop_last,
            distributed=self.world > 1,
            weights=self.tune.sample_weights,
        )
        self.sampler = self.train_loader.epoch_sampler
        self.steps_per_epoch = optim.optimizer_steps_per_epoch(len(self.train_loader), cfg.train.accum_steps)
        self.sched = optim.build_schedule(cfg, self.steps_per_epoch, self.world)
        late = optim.late_boundaries_warning(cfg)
        if late:
            self.hooks.on_message(f"warning: {late}")
        self.optimizer = optim.build_optimizer(cfg, self.model, self.sched)
        self.scaler = None
        if self.amp == "fp16":
            self.scaler = paddle.amp.GradScaler(
                init_loss_scaling=2.0**16, incr_every_n_steps=2000, decr_every_n_nan_or_inf=1
            )
        if self.amp:  # decorate before DataParallel wraps the model (O2 casts the parameters in place)
            self.model, self.optimizer = paddle.amp.decorate(
                models=self.model,
                optimizers=self.optimizer,
                level=cfg.runtime.amp_level,
                dtype=self._amp_dtype,
                master_weight=True,
            )
        self.net = paddle.DataParallel(self.model) if self.world > 1 else self.model

    @property
    def _amp_dtype(self) -> str:
        return "float16" if self.amp == "fp16" else "bfloat16"

    # ----------------------------------------------------------------------------------------- checkpoints
    def _restore(self, resume: str | Path) -> None:
        """Load model, optimizer (+ LR schedule), epoch/step, best score and partial epoch sums."""
        path = self.ckpts.resolve(resume)
        if path is None:
            self.hooks.on_message(f"no checkpoint to resume in {self.output}; starting from epoch 1")
            return
        fix = (
            f"resume with the settings the run started with ({self.output / CONFIG_NAME}), "
            "or fine-tune into a new --output with `tsn train --weights`"
        )
        state = self.ckpts.load(path, self.model, self.optimizer, fix)
        self.start_epoch, self.start_step, self._partial = state.epoch, state.step, state.partial
        self.best_top1, self.best_epoch = state.best_top1, state.best_epoch
        was = state.schedule or optim.schedule_beside(path, self.world)
        change = optim.schedule_change(was, optim.schedule_of(self.cfg, self.world), self.start_epoch)
        if change:
            self.hooks.on_message(f"warning: --resume {path.name}: {change}")
            self.sched.last_lr = self.sched.get_lr()  # the restored LR was the old schedule's: use the new one now
        if self.start_step and state.steps_per_epoch not in (None, self.steps_per_epoch):
            self.hooks.on_message(
                f"warning: {path} was written with {state.steps_per_epoch} steps per epoch, this run has "
                f"{self.steps_per_epoch} (batch size or data changed?): the resumed epoch will not match"
            )
        where = f"epoch {self.start_epoch} done"
        if self.start_step:
            where += f", {self.start_step} batches of epoch {self.start_epoch + 1}"
        self.hooks.on_message(f"resumed from {path} ({where})")

    def _save(self, stem: str, epoch: int, step: int = 0, partial: Optional[dict] = None) -> Path:
        """Write checkpoint set `stem` of this run's state (rank 0 only)."""
        state = RunState(
            epoch,
            step,
            self.best_top1,
            self.best_epoch,
            partial,
            self.steps_per_epoch,
            optim.schedule_of(self.cfg, self.world),
            self.cfg.runtime.seed,
        )
        return self.ckpts.save(stem, self.model, self.optimizer, state)

    # ----------------------------------------------------------------------------------------- distributed
    def _all_sum(self, values: list[float]) -> list[float]:
        """Sum `values` over all ranks (identity on one process)."""
        if self.world <= 1:
            return values
        import paddle.distributed as dist

        t = self.paddle.to_tensor(np.asarray(values, dtype="float64"))
        dist.all_reduce(t)
        return [float(x) for x in t.numpy()]

    def _stop_now(self) -> bool:
        """Whether a stop was requested (on any rank: all ranks stop at the same step)."""
        if self.world > 1:
            self.stop.requested = self._all_sum([1.0 if self.stop.requested else 0.0])[0] > 0
        return self.stop.requested

    # ----------------------------------------------------------------------------------------- loop
    def _epoch(self, epoch: int) -> Optional[dict]:
        """Train one epoch (from `start_step` when resuming); None when stopped by Ctrl-C (checkpoint written)."""
        start = self.start_step if epoch == self.start_epoch else 0
        self.train_set.set_epoch(epoch)
        self.sampler.set_epoch(epoch, skip=start)
        self.net.train()
        self.tune.set_modes()  # frozen BatchNorm layers stay in eval mode
        n_batches = len(self.train_loader)
        self.hooks.on_epoch_start(epoch, n_batches)
        meter = EpochMeter.from_state(self._partial if start else None)
        lr_used = float(self.optimizer.get_lr())
        t_last = time.perf_counter()
        for step, batch in enumerate(self.train_loader, start=start):
            t_data = time.perf_counter()
            meter.wait += t_data - t_last
            for path, reason in self.train_set.collect(batch[2], batch[3]):
                self.hooks.on_message(f"bad sample replaced: {path}: {reason}")
            loss, top1, top5, stepped_lr = self._train_batch(epoch, step, n_batches, batch[0], batch[1])
            meter.update(loss, top1, top5, int(batch[0].shape[0]))
            t_last = time.perf_counter()
            meter.busy += t_last - t_data
            lr_used = lr_used if stepped_lr is None else stepped_lr
            self.hooks.on_step(meter.step_stats(epoch, step + 1, n_batches, lr_used))
            if stepped_lr is None:
                continue
            self.hooks.on_optimizer_step(epoch, step + 1)
            if self._stop_now() and step + 1 < n_batches:
                if self.rank == 0:
                    self._last = self._save(INTERRUPTED, epoch, step + 1, meter.to_state())
                self.hooks.on_message(
                    f"interrupted at epoch {epoch + 1}, batch {step + 1}/{n_batches}: saved "
                    f"{self.ckpts.path(INTERRUPTED)}; continue with --resume auto"
                )
                return None
        self.start_step, self._partial = 0, None
        meter = meter.all_reduce(self._all_sum, self.world)
        return meter.as_row(epoch + 1, lr_used, len(self.train_set.bad_samples()))

    def _train_batch(self, epoch: int, step: int, n_batches: int, clips, labels):
        """Forward and backward of batch `step`, and the optimizer step that closes its accumulation group.

        Returns (loss, top-1, top-5 of the batch, the LR the optimizer stepped with or None when it did not step).
        """
        paddle, cfg = self.paddle, self.cfg
        labels = labels.reshape([-1, 1]).astype("int64")
        # Dropout draws from Paddle's global generator: re-seed it per batch so any step can be replayed.
        paddle.seed(step_seed(cfg.runtime.seed, epoch, step))
        with paddle.amp.auto_cast(enable=self.amp is not None, level=cfg.runtime.amp_level, dtype=self._amp_dtype):
            logits = self.net(clips)
            loss = self.tune.loss(logits.astype("float32"), labels)
        loss_v = float(loss.item())
        bad_loss = not math.isfinite(loss_v)
        if self.world > 1:  # every rank must stop together, or the others hang in the gradient all-reduce
            bad_loss = self._all_sum([1.0 if bad_loss else 0.0])[0] > 0
        if bad_loss:
            raise TsnError(
                f"loss is {loss_v} at epoch {epoch + 1}, step {step + 1}/{n_batches}: stopping; "
                f"{self.ckpts.last_good()} (lower the LR or check the data)"
            )
        group_start = step - step % cfg.train.accum_steps
        group = min(cfg.train.accum_steps, n_batches - group_start)  # a trailing partial group: its own size
        scaled = loss / group
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        stepped_lr = self._optimizer_step() if step + 1 - group_start == group else None
        lg = logits.astype("float32").detach()
        top1 = paddle.metric.accuracy(lg, labels, k=1).item()
        top5 = paddle.metric.accuracy(lg, labels, k=min(5, cfg.model.num_classes)).item()
        return loss_v, top1, top5, stepped_lr

    def _optimizer_step(self) -> float:
        """Step the optimizer (through the AMP scaler) and the schedule; returns the LR it stepped with."""
        lr = float(self.optimizer.get_lr())
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.clear_grad()
        self.sched.step()
        return lr

    def _end_epoch(self, epoch: int, row: dict) -> None:
        """Validate when due, then (rank 0) save the epoch's checkpoints and log its row."""
        from tsn_cli.engine.evaluate import validate

        cfg, main, done = self.cfg, self.rank == 0, epoch + 1
        last_epoch = done == cfg.train.epochs
        if self.val_records and cfg.train.val_interval and (done % cfg.train.val_interval == 0 or last_epoch):
            val_row, unreadable = validate(self.model, cfg, self.val_records)
            row.update(val_row)
            self.log.report_unreadable_val(unreadable)
            if self.best_top1 is None or row["val_top1"] > self.best_top1:
                self.best_top1, self.best_epoch = row["val_top1"], done
                row["best"] = True
                if main:
                    self._save(BEST, done)
            self.stop_reason = patience_reason(cfg.train.patience, self.best_epoch, done, cfg.train.val_interval)
            last_epoch = last_epoch or self.stop_reason is not None
        if not main:
            return
        if done % cfg.train.save_interval == 0 or last_epoch or self.stop.requested:
            self._last = self._save(epoch_stem(done), done)
            self.ckpts.remove(INTERRUPTED)  # an epoch checkpoint supersedes an older mid-epoch one
            if cfg.train.keep_last:
                self.ckpts.prune(cfg.train.keep_last, done)
        if self.val_records is None and last_epoch:
            self._save(BEST, done)
        self.log.write(row)

    def _result(self, epochs_done: int, history: list[dict], interrupted: bool = False) -> TrainResult:
        return TrainResult(
            self.output,
            epochs_done,
            self.best_top1,
            self.best_epoch,
            self._last,
            history,
            interrupted,
            None if interrupted else self.stop_reason,
        )

    def run(self) -> TrainResult:
        """Train from `start_epoch`/`start_step` to `train.epochs`; Ctrl-C saves the exact mid-epoch state."""
        if not hasattr(self, "model"):
            info = self.setup()
            self.hooks.on_start(info)
        epochs = self.cfg.train.epochs
        if self.rank == 0:
            # only now, after setup succeeded: a bad config or list never costs a previous run (--overwrite) its files
            start_run(self.output, self.cfg, overwrite=self.overwrite, on_message=self.hooks.on_message)
        history: list[dict] = []
        self._last, self.stop_reason = None, None
        epoch = self.start_epoch
        with self.stop.catching():
            try:
                for epoch in range(self.start_epoch, epochs):
                    row = self._epoch(epoch)
                    if row is None:
                        return self._result(epoch, history, interrupted=True)
                    self._end_epoch(epoch, row)
                    history.append(row)
                    self.hooks.on_epoch_end(row)
                    if self.stop_reason:
                        self.hooks.on_message(f"{self.stop_reason}; stopped after epoch {epoch + 1}")
                        return self._result(epoch + 1, history)
                    if self.stop.requested and epoch + 1 < epochs:
                        self.hooks.on_message(
                            f"interrupted after epoch {epoch + 1}: saved {self._last}; continue with --resume auto"
                        )
                        return self._result(epoch + 1, history, interrupted=True)
            except KeyboardInterrupt:
                self.hooks.on_message(f"aborted in epoch {epoch + 1}; the checkpoints in {self.output} are intact")
                self._last = self.ckpts.latest()
                return self._result(epoch, history, interrupted=True)
            finally:
                self.log.close()
        self._last = self._last or self.ckpts.latest()
        return self._result(epochs, history)

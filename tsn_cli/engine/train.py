"""Training: PaddleVideo's TSN recipe with Paddle's own optimizer, schedule, clipping and regularizer.

Crash safety: every checkpoint file is written atomically; the RNGs of an epoch are derived from (seed, epoch),
so resuming from the checkpoint of epoch E replays epoch E+1 exactly as an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tsn_cli.config import CONFIG_NAME, RunConfig, save_config
from tsn_cli.errors import ConfigError, TsnError

CKPT_RE = re.compile(r"TSN_epoch_(\d{5})\.pdparams$")


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
    """Piecewise decay (per optimizer step, at epoch boundaries), optionally behind a linear warmup."""
    from tsn_cli.engine.device import import_paddle

    paddle = import_paddle()
    lr0 = base_lr(cfg, world_size)
    bounds = [b * steps_per_epoch for b in lr_boundaries(cfg)]
    values = [lr0 * cfg.train.lr_decay**i for i in range(len(bounds) + 1)]
    sched = paddle.optimizer.lr.PiecewiseDecay(boundaries=bounds, values=values)
    warm = int(round(cfg.train.warmup_epochs * steps_per_epoch))
    if warm > 0:
        sched = paddle.optimizer.lr.LinearWarmup(learning_rate=sched, warmup_steps=warm, start_lr=0.0, end_lr=lr0)
    return sched


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


def find_latest_checkpoint(output: Path) -> Optional[Path]:
    """The newest `TSN_epoch_XXXXX.pdparams` in `output` whose optimizer and state files are complete."""
    best = None
    for p in Path(output).glob("TSN_epoch_*.pdparams"):
        m = CKPT_RE.search(p.name)
        if m and p.with_suffix(".pdopt").is_file() and p.with_suffix(".state.json").is_file():
            if best is None or int(m.group(1)) > best[0]:
                best = (int(m.group(1)), p)
    return best[1] if best else None


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


def _dist_info():
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1") or 1)
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0") or 0)
    return world, rank


class Trainer:
    """One training run of `cfg`; `run()` does the epochs. Usable from Python without the CLI."""

    def __init__(self, cfg: RunConfig, *, weights: Optional[Path] = None, resume: Optional[str | Path] = None, hooks: Optional[TrainHooks] = None):
        self.cfg = cfg
        self.weights = weights
        self.resume = resume
        self.hooks = hooks or TrainHooks()
        self.output = Path(cfg.runtime.output)
        self.world, self.rank = _dist_info()

    # ----------------------------------------------------------------------------------------- setup
    def setup(self) -> dict:
        """Build everything and return a description (model size, data counts); no training step runs."""
        from tsn_cli.engine import build
        from tsn_cli.engine.device import import_paddle, resolve_device
        from tsn_cli.model.flops import model_size

        cfg = self.cfg
        self.paddle = paddle = import_paddle(cfg.runtime.threads)
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
        self.steps_per_epoch = max(1, len(self.train_loader) // cfg.train.accum_steps)
        self.sched = build_schedule(cfg, self.steps_per_epoch, self.world)
        self.optimizer = build_optimizer(cfg, self.model, self.sched)
        self.net = paddle.DataParallel(self.model) if self.world > 1 else self.model
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**16, incr_every_n_steps=2000, decr_every_n_nan_or_inf=1) if self.amp == "fp16" else None
        if self.amp:
            self.model, self.optimizer = paddle.amp.decorate(models=self.model, optimizers=self.optimizer, level=cfg.runtime.amp_level, dtype="float16" if self.amp == "fp16" else "bfloat16", master_weight=True)

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
            "lr": base_lr(cfg, self.world),
            "lr_boundaries": lr_boundaries(cfg),
            **size,
        }

    # ----------------------------------------------------------------------------------------- checkpoints
    def _restore(self, resume: str | Path) -> None:
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
        self.model.set_state_dict({k: v for k, v in load_state(path).items()})
        self.optimizer.set_state_dict(load_object(path.with_suffix(".pdopt")))
        meta = json.loads(state_file.read_text()) if state_file.is_file() else {}
        m = CKPT_RE.search(path.name)
        self.start_epoch = int(meta.get("epoch", int(m.group(1)) if m else 0))
        self.best_top1 = meta.get("best_top1")
        self.best_epoch = meta.get("best_epoch")
        self.hooks.on_message(f"resumed from {path} (epoch {self.start_epoch} done)")

    def _save(self, stem: str, epoch: int) -> Path:
        """Write stem.pdparams / .pdopt / .state.json atomically (rank 0 only)."""
        from tsn_cli.model.checkpoint import save_object, save_state

        base = self.output / stem
        save_state({k: v.numpy() for k, v in self.model.state_dict().items()}, base.with_suffix(".pdparams"))
        save_object(self.optimizer.state_dict(), base.with_suffix(".pdopt"))
        meta = {"epoch": epoch, "best_top1": self.best_top1, "best_epoch": self.best_epoch, "seed": self.cfg.runtime.seed, "time": time.time()}
        from tsn_cli.fsutil import atomic_write_text

        atomic_write_text(base.with_suffix(".state.json"), json.dumps(meta, indent=2))
        return base.with_suffix(".pdparams")

    def _write_run_files(self) -> None:
        from tsn_cli.engine.build import label_names
        from tsn_cli.fsutil import atomic_write_text

        self.output.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.output / CONFIG_NAME)
        names = label_names(self.cfg)
        atomic_write_text(self.output / "label_names.txt", "".join(f"{i} {n}\n" for i, n in enumerate(names)))

    # ----------------------------------------------------------------------------------------- loop
    def _epoch(self, epoch: int) -> dict:
        import paddle.nn.functional as F

        paddle, cfg = self.paddle, self.cfg
        seed_everything(cfg.runtime.seed * 1009 + epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        sampler = getattr(self.train_loader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self.net.train()
        n_batches = len(self.train_loader)
        self.hooks.on_epoch_start(epoch, n_batches)
        tot_loss = tot_c1 = tot_c5 = tot_n = 0.0
        wait = busy = 0.0
        t_last = time.perf_counter()
        accum = cfg.train.accum_steps
        for step, batch in enumerate(self.train_loader):
            t_data = time.perf_counter()
            wait += t_data - t_last
            clips, labels = batch[0], batch[1]
            labels = labels.reshape([-1, 1]).astype("int64")
            if hasattr(self.train_set, "collect"):
                for path, reason in self.train_set.collect(batch[2], batch[3]):
                    self.hooks.on_message(f"bad sample replaced: {path}: {reason}")
            with paddle.amp.auto_cast(enable=self.amp is not None, level=cfg.runtime.amp_level, dtype="float16" if self.amp == "fp16" else "bfloat16"):
                logits = self.net(clips)
                loss = F.cross_entropy(logits.astype("float32"), labels)
            loss_v = float(loss.item())
            if not math.isfinite(loss_v):
                raise TsnError(f"loss is {loss_v} at epoch {epoch + 1}, step {step + 1}: stopping; the last good checkpoint in {self.output} is intact (lower the LR or check the data)")
            scaled = loss / accum
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
            if (step + 1) % accum == 0 or step + 1 == n_batches:
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.optimizer.clear_grad()
                self.sched.step()
            n = int(clips.shape[0])
            acc1 = paddle.metric.accuracy(logits.astype("float32"), labels, k=1).item()
            acc5 = paddle.metric.accuracy(logits.astype("float32"), labels, k=min(5, cfg.model.num_classes)).item()
            tot_loss += loss_v * n
            tot_c1 += acc1 * n
            tot_c5 += acc5 * n
            tot_n += n
            t_last = time.perf_counter()
            busy += t_last - t_data
            self.hooks.on_step(
                StepStats(epoch, step + 1, n_batches, tot_loss / tot_n, tot_c1 / tot_n, tot_c5 / tot_n, float(self.optimizer.get_lr()), tot_n / max(wait + busy, 1e-9), wait / max(wait + busy, 1e-9))
            )
        bad = self.train_set.bad_samples() if hasattr(self.train_set, "bad_samples") else {}
        return {
            "epoch": epoch + 1,
            "loss": tot_loss / max(tot_n, 1),
            "top1": tot_c1 / max(tot_n, 1),
            "top5": tot_c5 / max(tot_n, 1),
            "lr": float(self.optimizer.get_lr()),
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
        scores, labels, _, ok = score_loader(self.model, loader, 1, cfg.eval.max_views_per_batch, "logits")
        from tsn_cli.engine import metrics as M

        scores, labels = scores[ok], labels[ok]
        return {"val_top1": M.topk_accuracy(scores, labels, 1), "val_top5": M.topk_accuracy(scores, labels, 5), "val_videos": int(len(labels)), "val_unreadable": int((~ok).sum())}

    def run(self) -> TrainResult:
        """Train from `start_epoch` to `train.epochs`; Ctrl-C saves a checkpoint of the last finished epoch."""
        from tsn_cli.fsutil import append_line

        if not hasattr(self, "model"):
            info = self.setup()
            self.hooks.on_start(info)
        cfg = self.cfg
        main = self.rank == 0
        if main:
            self._write_run_files()
        history, last = [], None
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, cfg.train.epochs):
                row = self._epoch(epoch)
                last_epoch = epoch + 1 == cfg.train.epochs
                if self.val_records and cfg.train.val_interval and ((epoch + 1) % cfg.train.val_interval == 0 or last_epoch):
                    row.update(self.validate())
                    if self.best_top1 is None or row["val_top1"] > self.best_top1:
                        self.best_top1, self.best_epoch = row["val_top1"], epoch + 1
                        row["best"] = True
                        if main:
                            self._save("TSN_best", epoch + 1)
                if main and ((epoch + 1) % cfg.train.save_interval == 0 or last_epoch):
                    last = self._save(f"TSN_epoch_{epoch + 1:05d}", epoch + 1)
                if main and self.val_records is None and last_epoch:
                    self._save("TSN_best", epoch + 1)
                if main:
                    append_line(self.output / "metrics.jsonl", json.dumps(row))
                history.append(row)
                self.hooks.on_epoch_end(row)
        except KeyboardInterrupt:
            self.hooks.on_message(f"interrupted in epoch {epoch + 1}; the last finished epoch's checkpoint is in {self.output}")
            return TrainResult(self.output, epoch, self.best_top1, self.best_epoch, last or find_latest_checkpoint(self.output), history, interrupted=True)
        return TrainResult(self.output, cfg.train.epochs, self.best_top1, self.best_epoch, last, history)

"""The TSN dataset and its DataLoader: reproducible augmentation with worker processes, and bad samples that
never crash training.

Sample tuple (what ``dataset[i]`` returns and the loader batches)::

    (clip  float32 [V, 3, t, t],   V = views * seg_num  (train: seg_num; test views crop-major)
     label int64,                  the label of the clip actually returned
     index int64,                  the dataset index that was ASKED for (0..len-1)
     ok    int64)                  1 = the sample at `index` was read; 0 = it was bad;
                                   2 = read, but the video decodes only partly (eval only, see below)

* train: a bad sample is replaced (the clip and label come from another sample, so every row of a batch is
  usable for training); ``ok = 0`` marks the row so the main process can count and log it.
* eval (``train=False``): nothing is replaced; a bad sample gives a zero clip with ``ok = 0`` -- drop those rows
  from scoring and report them. Videos are opened with ``verify=True``: a truncated video is sampled over the
  frames that decode and its row has ``ok = 2``; ``dataset.warning(index)`` gives the reason.

Call ``dataset.collect(index, ok)`` in the main process with every batch's ``index``/``ok``: it records newly
seen bad samples (``path -> reason``; the reason is found again in the main process by repeating the same
deterministic load, because worker processes cannot share memory with it) and returns them so the caller logs
each once. ``bad_samples()`` gives all of them.

Reproducibility: every sample's randomness (frame choice, crop, flip, replacement) comes from
``numpy.random.default_rng([seed, epoch, index, attempt])`` -- not from per-process state -- so batches are
identical with 0 or N workers and across runs. The batch sampler carries the epoch into the indices it yields
(``(epoch + 1) * len + index``), so worker processes need no shared state. The shuffle order is
``default_rng([seed, epoch])``. The epoch advances each time the loader is iterated; ``loader.set_epoch(e)``
sets it explicitly (e.g. when resuming).

Memory is bounded: one decoder per sample at a time (closed after use), at most ``prefetch_factor *
workers`` batches in flight.

This module imports paddle (through ``import_paddle``, which sets the CPU thread count first); the paddle-free
parts of a sample -- list records, segment sampling, transforms, frame sources -- live in ``lists``,
``sampling``, ``transforms``, ``video`` and ``views``.
"""

from __future__ import annotations

import math
import random
from typing import Optional, Sequence

import numpy as np

from tsn_cli.constants import FRAME_TEMPLATE
from tsn_cli.data.video import open_source
from tsn_cli.data.views import load_clip
from tsn_cli.errors import DataError, DecodeError, raise_if_interrupted
from tsn_cli.runtime import import_paddle

# not a bare `import paddle`: that would fix the CPU math threads at one before the tool sets them
paddle = import_paddle()

MAX_REPLACEMENT_TRIES = 10


def _rng(seed: int, epoch: int, index: int, attempt: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index), int(attempt)])


class TSNDataset(paddle.io.Dataset):
    """Map-style dataset of TSN clips (see the module docstring for the sample tuple and bad-sample handling).

    ``records``: `VideoRecord`s; ``fmt``: ``"video"`` | ``"frames"``; ``transform``: `TrainTransform`
    (train) or `TestTransform`; ``views``: views per segment (defaults to ``transform.views``).
    """

    def __init__(
        self,
        records: Sequence,
        fmt: str,
        seg_num: int,
        transform,
        train: bool,
        seed: int = 0,
        frame_template: str = FRAME_TEMPLATE,
        views: int | None = None,
    ):
        if fmt not in ("video", "frames"):
            raise ValueError(f"unknown format {fmt!r} (allowed: video, frames)")
        self.records = list(records)
        if not self.records:
            raise DataError("the dataset is empty (no usable list lines)")
        self.fmt = fmt
        self.seg_num = int(seg_num)
        self.transform = transform
        self.train = bool(train)
        self.seed = int(seed)
        self.frame_template = frame_template
        tviews = int(getattr(transform, "views", 1))
        if views is not None and int(views) != tviews and hasattr(transform, "views"):
            raise ValueError(f"views={views} but the transform makes {tviews} view(s) per segment")
        self.views = int(views) if views is not None else tviews
        self.target_size = int(getattr(transform, "target_size", 224))
        self.epoch = 0
        # Reasons seen in THIS process (the main process when workers=0, else a worker's private copy).
        self._local_bad: dict[int, str] = {}
        self._local_warn: dict[int, str] = {}  # eval: index -> why the video was read only partly
        # Main-process registry filled by collect(): index -> reason, path -> reason.
        self._bad_by_index: dict[int, str] = {}
        self._bad: dict[str, str] = {}

    # ------------------------------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.records)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """Shape of one sample's clip: ``(views * seg_num, 3, t, t)``."""
        return (self.views * self.seg_num, 3, self.target_size, self.target_size)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for ``dataset[i]`` with ``i < len`` (the loader encodes the epoch in the index instead)."""
        self.epoch = int(epoch)

    def _split_key(self, key) -> tuple[int, int]:
        key = int(key)
        n = len(self.records)
        if key < 0:
            raise IndexError(key)
        if key >= n:  # a loader key: (epoch + 1) * n + index
            return key % n, key // n - 1
        return key, self.epoch

    # ------------------------------------------------------------------------------------ loading
    def _open(self, index: int):
        # Eval verifies videos (partly decodable ones are flagged); training keeps PaddleVideo's plain open.
        return open_source(self.records[index], self.fmt, self.frame_template, verify=not self.train)

    def _load(self, index: int, epoch: int, attempt: int) -> tuple[np.ndarray, tuple[str, ...]]:
        rec = self.records[index]
        rng = _rng(self.seed, epoch, index, attempt)
        with self._open(index) as src:
            clip = load_clip(src, self.seg_num, self.transform, self.train, rng)
            warnings = tuple(src.warnings)
        if clip.shape != self.clip_shape:
            raise DecodeError(rec.path, f"clip has shape {clip.shape}, expected {self.clip_shape}")
        return clip, warnings

    def _try_load(self, index: int, epoch: int, attempt: int) -> tuple[np.ndarray | None, str | None, tuple]:
        """(clip, None, warnings) or (None, reason, ())."""
        try:
            clip, warnings = self._load(index, epoch, attempt)
            return clip, None, warnings
        except DecodeError as exc:
            raise_if_interrupted(exc)
            return None, exc.reason, ()
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # any decoder/transform failure must not kill a worker
            raise_if_interrupted(exc)
            return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}".rstrip(": "), ()

    def __getitem__(self, key):
        index, epoch = self._split_key(key)
        clip, reason, warnings = self._try_load(index, epoch, 0)
        if clip is not None:
            if warnings:
                self._local_warn[index] = "; ".join(warnings)
            return clip, np.int64(self.records[index].label), np.int64(index), np.int64(2 if warnings else 1)
        self._local_bad[index] = reason
        if not self.train:
            return (
                np.zeros(self.clip_shape, dtype=np.float32),
                np.int64(self.records[index].label),
                np.int64(index),
                np.int64(0),
            )
        # Deterministic replacement: candidates drawn from an rng of (seed, epoch, index).
        pick = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch, index, 0x5EED])
        n = len(self.records)
        for attempt in range(1, MAX_REPLACEMENT_TRIES + 1):
            j = int(pick.integers(n)) if n > 1 else index
            if j == index or j in self._local_bad:
                continue
            clip, why, _ = self._try_load(j, epoch, attempt)
            if clip is not None:
                return clip, np.int64(self.records[j].label), np.int64(index), np.int64(0)
            self._local_bad[j] = why
        raise DataError(
            f"{self.records[index].path}: unreadable ({reason}), and {MAX_REPLACEMENT_TRIES} replacement samples "
            "failed too -- check the dataset (tsn prepare check)"
        )

    # ------------------------------------------------------------------------------- bad samples
    def reason(self, index: int) -> str:
        """Why sample ``index`` cannot be read (repeats the deterministic load if this process has not seen it)."""
        index = int(index)
        if index in self._bad_by_index:
            return self._bad_by_index[index]
        if index in self._local_bad:
            return self._local_bad[index]
        sampler = getattr(self, "_sampler", None)
        epoch = sampler.epoch if sampler is not None else self.epoch
        _, why, _ = self._try_load(index, epoch, 0)
        return why or "unreadable (not reproducible: the sample loads now)"

    def warning(self, index: int) -> str:
        """Why sample ``index`` was flagged ``ok = 2`` (re-opens the video if this process has not seen it)."""
        index = int(index)
        if index in self._local_warn:
            return self._local_warn[index]
        try:
            with self._open(index) as src:
                return "; ".join(src.warnings) or "partly decodable (not reproducible: the video verifies now)"
        except DecodeError as exc:
            return exc.reason

    def collect(self, index, ok) -> list[tuple[str, str]]:
        """Record the bad rows of a batch (``index``/``ok`` as returned by the loader: tensors, arrays or lists).

        Returns the newly seen ``(path, reason)`` pairs, so the caller can log each bad sample once.
        """
        idx = _to_numpy(index).reshape(-1)
        okv = _to_numpy(ok).reshape(-1)
        new: list[tuple[str, str]] = []
        for i in idx[okv == 0].tolist():
            if i in self._bad_by_index:
                continue
            why = self.reason(i)
            self._bad_by_index[i] = why
            path = self.records[i].path
            if path not in self._bad:
                self._bad[path] = why
                new.append((path, why))
        return new

    def bad_samples(self) -> dict[str, str]:
        """All bad samples recorded by `collect` (in this process, and directly by ``__getitem__`` when there are
        no workers): ``path -> reason``."""
        return dict(self._bad)

    @property
    def bad_count(self) -> int:
        """Number of distinct bad samples recorded so far."""
        return len(self._bad)


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "numpy"):
        x = x.numpy()
    return np.asarray(x, dtype=np.int64)


# ------------------------------------------------------------------------------------------- loader
class EpochBatchSampler:
    """Batches of ``(epoch + 1) * n + index`` keys: shuffled with ``default_rng([seed, epoch])`` when ``shuffle``,
    sharded across ``world`` ranks (padded by repeating, as Paddle's DistributedBatchSampler) when distributed.

    The epoch advances by one each time the sampler is iterated; `set_epoch` overrides it and can skip the
    epoch's first batches (a mid-epoch resume). With ``weights`` (one per sample, e.g. 1/class frequency for
    ``train.class_balance: sampler``) an epoch is ``n`` indices drawn with replacement in proportion to them, from
    the same ``default_rng([seed, epoch])``: deterministic, so the resume skip and the sharding work unchanged.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        weights: Optional[np.ndarray] = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world = max(1, int(world))
        self.p = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (self.n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(f"sampling weights must be {self.n} finite values >= 0, not all 0")
            self.p = w / w.sum()
        self.epoch = 0
        self._next_epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Use ``epoch`` for the next iteration (shuffle order and augmentation), leaving out its first ``skip``
        batches: they are skipped as index lists, so a resumed epoch never decodes the batches already done."""
        self._next_epoch = int(epoch)
        self._skip = int(skip)

    def _indices(self, epoch: int) -> np.ndarray:
        idx = np.arange(self.n, dtype=np.int64)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch])
        if self.p is not None:
            idx = rng.choice(self.n, size=self.n, replace=True, p=self.p).astype(np.int64)
        elif self.shuffle:
            idx = rng.permutation(self.n)
        if self.world > 1:
            per_rank = math.ceil(self.n / self.world)
            total = per_rank * self.world
            if total > self.n:
                idx = np.concatenate([idx, idx[: total - self.n]])
            idx = idx[self.rank : total : self.world]
        return idx

    def __iter__(self):
        epoch, skip = self._next_epoch, self._skip
        self.epoch = epoch
        self._next_epoch, self._skip = epoch + 1, 0
        keys = self._indices(epoch) + (epoch + 1) * self.n
        bs = self.batch_size
        for start in range(skip * bs, len(keys), bs):
            batch = keys[start : start + bs]
            if len(batch) < bs and self.drop_last:
                break
            yield batch.tolist()

    def __len__(self) -> int:
        per_rank = math.ceil(self.n / self.world) if self.world > 1 else self.n
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)


def _worker_init(seed: int):
    def init(worker_id: int) -> None:
        # Per-worker seeds for any library that uses global RNGs (our own sampling never does).
        s = (int(seed) * 1000003 + worker_id) & 0xFFFFFFFF
        np.random.seed(s)
        random.seed(s)
        # NOT cv2.setNumThreads() here: in a forked child whose parent already started OpenCV's pthreads pool
        # it deadlocks (measured with this opencv build); OpenCV re-creates its pool after fork by itself.

    return init


def build_loader(
    dataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int = 0,
    drop_last: bool = False,
    distributed: bool = False,
    prefetch_factor: int = 2,
    timeout: int = 5,
    weights=None,
):
    """A ``paddle.io.DataLoader`` over ``dataset`` with reproducible, epoch-aware batches.

    Batches are ``[clip [N,V,3,t,t] float32, label [N] int64, index [N] int64, ok [N] int64]`` (paddle tensors).
    ``loader.set_epoch(e)`` selects the epoch of the next pass (it also advances by itself on each pass).
    With workers, ``timeout`` is how often (seconds) Paddle checks its workers while waiting for a batch: a
    worker that died is reported after at most that long (as a `DataError`). Paddle keeps waiting after a
    timeout while its workers are alive, so this must stay short (a long value only delays that report). With \
``distributed`` the data is sharded by ``paddle.distributed`` rank; the last batch may repeat samples
    (use ``index`` to de-duplicate in eval). ``weights`` (per sample) draws each epoch with replacement in
    proportion to them (see `EpochBatchSampler`).
    """
    rank, world = 0, 1
    if distributed:
        rank = int(paddle.distributed.get_rank())
        world = int(paddle.distributed.get_world_size())
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle, drop_last, seed, rank, world, weights)
    workers = max(0, int(workers))
    kwargs = dict(
        batch_sampler=sampler,
        num_workers=workers,
        return_list=True,
        use_shared_memory=workers > 0,
        timeout=int(timeout) if workers > 0 else 0,
    )
    if workers > 0:
        kwargs.update(worker_init_fn=_worker_init(seed), prefetch_factor=int(prefetch_factor), persistent_workers=False)
    inner = paddle.io.DataLoader(dataset, **kwargs) if workers > 0 else None
    loader = SafeLoader(dataset, sampler, inner)
    dataset._sampler = sampler  # collect() repeats failed loads with the epoch being iterated
    return loader


class SafeLoader:
    """The loader `build_loader` returns: iterates batches like ``paddle.io.DataLoader`` but never hangs and
    turns loader failures into one-line `DataError`s.

    * ``workers == 0``: batches are built in the calling thread. Paddle's single-process DataLoader runs the
      dataset in a helper thread and waits forever when ``__getitem__`` raises (Paddle 3.3), so it is not used.
    * ``workers > 0``: Paddle's multi-process DataLoader; an exception re-raised from a worker (its message
      holds the worker's whole traceback) or a worker that died (killed by the OOM killer, ``os._exit``)
      becomes a `DataError` naming the cause.

    ``loader.set_epoch(epoch, skip=n)`` is its `EpochBatchSampler`'s (``loader.epoch_sampler``).
    """

    def __init__(self, dataset, sampler, inner=None):
        self.dataset = dataset
        self._inner = inner
        self.epoch_sampler = sampler
        self.set_epoch = sampler.set_epoch

    def __len__(self) -> int:
        return len(self.epoch_sampler)

    def __iter__(self):
        if self._inner is None:
            yield from self._iter_sync()
            return
        import threading

        # Paddle re-raises a worker's exception in its reader thread, whose traceback the default hook would
        # print; keep it instead and report its last line.
        seen: list[BaseException] = []
        previous = threading.excepthook
        threading.excepthook = lambda args: seen.append(args.exc_value)
        try:
            it = None
            while True:
                try:
                    if it is None:
                        it = iter(self._inner)
                    batch = next(it)
                except StopIteration:
                    return
                except (KeyboardInterrupt, MemoryError):
                    raise
                except Exception as exc:
                    cause = seen[0] if seen else exc
                    if isinstance(cause, DataError) or "caught DataError" in str(cause):
                        raise DataError(_last_line(cause).split("DataError: ", 1)[-1]) from None
                    raise DataError(_loader_failure(cause)) from None
                yield batch
        finally:
            threading.excepthook = previous

    def _iter_sync(self):
        for keys in self.epoch_sampler:
            items = [self.dataset[k] for k in keys]
            yield [paddle.to_tensor(np.stack([np.asarray(it[f]) for it in items])) for f in range(len(items[0]))]


def _last_line(exc: BaseException) -> str:
    """The last non-empty line of a (worker-traceback-carrying) message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _loader_failure(exc: BaseException) -> str:
    msg = str(exc)
    if "exit unexpectedly" in msg or "exited unexpectedly" in msg or "killed_" in msg or "killed" in msg.lower():
        detail = "" if "killed_" in msg else ": " + _last_line(exc)[:200]
        m = __import__("re").search(r"pid (\d+)\) exited unexpectedly with code (-?\d+)", msg)
        if m:
            detail = f" (pid {m.group(1)}, exit code {m.group(2)})"
        return (
            "a data-loading worker process died (out of memory? try fewer --workers or a smaller --batch-size)" + detail
        )
    if "timeout" in msg.lower() or "timed out" in msg.lower():
        return "a data-loading worker did not deliver a batch in time (hung decoder?): " + _last_line(exc)[:200]
    return f"data loading failed: {type(exc).__name__}: {_last_line(exc)[:200]}"


def set_epoch(loader, epoch: int, skip: int = 0) -> None:
    """Select the epoch of the loader's next pass (same as ``loader.set_epoch``)."""
    loader.epoch_sampler.set_epoch(epoch, skip)


__all__ = ["TSNDataset", "EpochBatchSampler", "SafeLoader", "build_loader", "set_epoch", "MAX_REPLACEMENT_TRIES"]

"""Reading and writing weights safely: PaddleVideo ``.pdparams``/``.pdopt`` pickles and ``.safetensors``.

What ``paddle.save`` writes (checked on Paddle 3.3.1; Paddle 2.x writes the same shapes of data):

* ``paddle.save(model.state_dict(), f)``: a pickle (protocol 4 by default; 2 or 3 on request) of a plain
  ``dict`` mapping structured names (``backbone.conv._conv.weight``) to **numpy arrays** (``ndarray`` rebuilt by
  ``numpy.core.multiarray._reconstruct`` — ``numpy._core...`` when written under numpy 2 — plus ``numpy.dtype``),
  and one extra key ``"StructuredToParameterName@@"`` -> ``{structured name: parameter name}``.
  With protocol 2/3 arrays over 1 GiB are split into ``"<key>@@.<i>"`` parts described by
  ``"UnpackBigParamInfor@@"``; protocol 2 stores bytes through ``_codecs.encode(str, "latin1")``.
* ``paddle.save(optimizer.state_dict(), f)`` (``.pdopt``): the same, plus ``"LR_Scheduler": {"last_epoch": int,
  "last_lr": float, ...}`` (Python scalars, sometimes numpy scalars via ``numpy.core.multiarray.scalar``).
* ``paddle.save`` of any other nested object stores each Tensor as ``builtins.tuple((name, ndarray))`` and
  OrderedDicts as ``collections.OrderedDict``.

So :class:`_SafeUnpickler` resolves exactly those globals and refuses every other one (``os.system``,
``builtins.eval``, ``posix.system``, ...) *before* anything is called: a crafted file raises
:class:`CheckpointError` and its payload never runs. Object arrays are refused too.

Files we write (:func:`save_state`, :func:`save_object`) are plain-dict protocol-4 pickles of numpy arrays that
reference ``numpy.core.multiarray._reconstruct`` — the spelling every numpy (1.x and 2.x) and therefore every
``paddle.load`` (Paddle 2.x and 3.x, i.e. PaddleVideo) can read. No name table is written (``paddle.load`` drops
it by default and ``set_state_dict`` matches structured names). All writes are atomic.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tsn_cli.config import preview
from tsn_cli.errors import CheckpointError, TsnError, first_line

NAME_TABLE_KEY = "StructuredToParameterName@@"
BIG_PARAM_KEY = "UnpackBigParamInfor@@"
_PICKLE_SUFFIXES = (".pdparams", ".pdopt", ".pdparams.pdopt", ".pkl", ".pickle")


# ----------------------------------------------------------------------------------------- restricted unpickler
class _Refused(pickle.UnpicklingError):
    """A global outside the allow-list was referenced."""


def _safe_dtype(*args, **kwargs):
    """``numpy.dtype`` without object dtypes (an object array could hold anything)."""
    dt = np.dtype(*args, **kwargs)
    if dt.hasobject:
        raise _Refused("object dtype")
    return dt


def _safe_codecs_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 text -> bytes) and nothing else."""
    if not isinstance(obj, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise _Refused("_codecs.encode with a non latin-1 codec")
    return obj.encode("latin-1", errors)


def _safe_scalar(dtype, data=None):
    """numpy scalar from (dtype, raw bytes), as numpy pickles ``np.float64(1.5)``; numeric dtypes only."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise _Refused("numpy scalar of a non-numeric dtype")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _safe_reconstruct(cls, shape, dtype_code):
    """``numpy.core.multiarray._reconstruct`` restricted to plain ndarrays (the array's data comes via BUILD)."""
    if cls is not np.ndarray:
        raise _Refused("_reconstruct of a non-ndarray class")
    # a 0-size placeholder: BUILD then sets dtype/shape/data, so a bogus `shape` here cannot allocate anything
    return np.ndarray.__new__(np.ndarray, (0,), dtype=np.uint8)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.multiarray", "scalar"): _safe_scalar,
    ("numpy._core.multiarray", "scalar"): _safe_scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _safe_codecs_encode,
    ("collections", "OrderedDict"): dict,  # order is kept by dict; no OrderedDict hooks needed
    ("builtins", "tuple"): tuple,  # paddle.save stores a Tensor as tuple((name, ndarray))
    ("__builtin__", "tuple"): tuple,  # the same written by Python 2 pickles
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays, numpy scalars and plain containers only."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):  # torch-style external storages: never in a Paddle file
        raise _Refused("persistent id")


MAX_EXPANDED_ITEMS = 1_000_000  # a real .pdparams/.pdopt holds a few thousand containers and arrays


def _children(obj) -> list | None:
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, (list, tuple)):
        return list(obj)
    return None


def _check_objects(obj, where: str) -> None:
    """Reject ndarrays whose dtype holds Python objects (refused at dtype creation too; belt and braces), and
    structures that share containers so as to grow exponentially when walked as a tree (a list holding itself
    twice, 80 levels deep, is 657 bytes) or that contain themselves. Each object is visited once (by id); the
    size the structure would have as a tree is summed bottom-up, so this takes time linear in the file."""
    size: dict[int, int] = {}  # id -> items in the subtree, counting shared parts each time they are reached
    open_ids: set[int] = set()  # containers whose subtree is being walked (a cycle reaches one of them again)
    stack: list[tuple[Any, bool]] = [(obj, False)]
    while stack:
        cur, done = stack.pop()
        key = id(cur)
        kids = _children(cur)
        if done:
            open_ids.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            if size[key] > MAX_EXPANDED_ITEMS:
                raise CheckpointError(
                    f"{where}: refusing to load: its nested structure reuses containers so "
                    f"that it would expand to over {MAX_EXPANDED_ITEMS:,} items "
                    "(corrupt or malicious file)"
                )
            continue
        if key in size:
            continue
        if key in open_ids:
            raise CheckpointError(f"{where}: refusing to load: a container holds itself (corrupt or malicious file)")
        if isinstance(cur, np.ndarray) and cur.dtype.hasobject:
            raise CheckpointError(f"{where}: refusing to load: it contains an object array")
        if kids is None:
            size[key] = 1
            continue
        open_ids.add(key)
        stack.append((cur, True))
        stack.extend((k, False) for k in kids if id(k) not in size)


def _open_bytes(path: Path) -> bytes:
    from tsn_cli.fsutil import MAX_WEIGHTS_BYTES, read_regular_file

    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"{path}: no such file")
    return read_regular_file(path, MAX_WEIGHTS_BYTES, "weights file", CheckpointError)


def _unpickle(data: bytes, where: str):
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as exc:
        raise CheckpointError(
            f"{where}: refusing to load: the pickle asks for {exc}, which a weights file never needs "
            "(corrupt or malicious file)"
        ) from None
    except (pickle.UnpicklingError, EOFError) as exc:
        raise CheckpointError(f"{where}: truncated or not a checkpoint ({first_line(exc)})") from None
    except (MemoryError, RecursionError) as exc:
        raise CheckpointError(f"{where}: not a usable checkpoint ({type(exc).__name__})") from None
    except Exception as exc:  # ValueError/TypeError/... from malformed opcodes or array state
        raise CheckpointError(f"{where}: truncated or not a checkpoint ({first_line(exc)})") from None
    _check_objects(obj, where)
    return obj


def _is_pickle(data: bytes) -> bool:
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def _is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


# ----------------------------------------------------------------------------------------- reading
def load_object(path: str | os.PathLike) -> Any:
    """Read a Paddle pickle (``.pdparams``/``.pdopt``) safely and return its nested structure.

    Values are numpy arrays, numpy/Python scalars, str, and dict/list/tuple containers (OrderedDicts come back as
    dicts). Big parameters split by protocol-2/3 saving are re-joined. ``.safetensors`` files return their
    flat tensor dict. Raises :class:`CheckpointError` (one line naming the file) on a missing, truncated,
    non-checkpoint or unsafe file.
    """
    path = Path(path)
    data = _open_bytes(path)
    if _is_pickle(data):
        obj = _unpickle(data, str(path))
        if isinstance(obj, dict):
            obj = _join_big_params(obj, str(path), len(data))
        return obj
    if _is_safetensors(data):
        return _load_safetensors_bytes(data, str(path))
    if not data:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    raise CheckpointError(f"{path}: not a checkpoint (neither a Paddle pickle nor safetensors)")


def _join_big_params(obj: dict, where: str, file_size: int) -> dict:
    """Undo paddle.save's protocol-2/3 splitting of >1 GiB arrays (``UnpackBigParamInfor@@``).

    Every part must be an array read from the file and the declared shape must hold exactly the parts' values,
    all checked before anything is joined: a crafted table (parts that are shared nested lists, a huge
    ``OriginShape``) can then never make the join allocate more than the file holds."""
    info = obj.get(BIG_PARAM_KEY)
    if not isinstance(info, dict):
        return obj
    obj = dict(obj)
    plan = []
    total = 0
    used: set[str] = set()
    try:
        for key, meta in info.items():
            slices = [str(p) for p in meta["slices"]]
            if used.intersection(slices) or len(set(slices)) != len(slices):
                raise ValueError(f"{key}: a part is listed twice")
            used.update(slices)
            parts = [obj[p] for p in slices]
            if not parts or not all(isinstance(a, np.ndarray) and a.dtype.kind in "biuf" for a in parts):
                raise ValueError(f"{key}: a part is not a numeric array")
            if len({a.dtype for a in parts}) != 1:
                raise ValueError(f"{key}: parts of different dtypes")
            shape = tuple(int(d) for d in meta["OriginShape"])
            if any(d < 0 for d in shape):
                raise ValueError(f"{key}: negative size in shape {preview(list(shape))}")
            count = int(np.prod(shape, dtype=object))
            nbytes = count * parts[0].dtype.itemsize
            total += nbytes
            if count != sum(a.size for a in parts) or total > file_size:
                raise ValueError(
                    f"{key}: shape {preview(list(shape))} does not match its parts "
                    f"({sum(a.size for a in parts)} values in a {file_size}-byte file)"
                )
            plan.append((key, slices, shape))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{where}: damaged split-parameter table ({first_line(exc)})") from None
    for key, slices, shape in plan:
        obj[key] = np.concatenate([obj.pop(p).reshape(-1) for p in slices]).reshape(shape)
    obj.pop(BIG_PARAM_KEY, None)
    return obj


def _load_safetensors_bytes(data: bytes, where: str) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load as st_load

        return dict(st_load(data))
    except Exception as exc:
        raise CheckpointError(f"{where}: truncated or invalid safetensors file ({first_line(exc)})") from None


def load_state(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a weights file into ``{structured key: numpy array}`` without ever executing code.

    Accepts ``.pdparams`` pickles of any Paddle 2.x/3.x era (detected by content, not suffix) and
    ``.safetensors``. The name table and non-array entries are dropped; ``(name, ndarray)`` tuples written for
    tensors are unwrapped. A file with no arrays at all raises :class:`CheckpointError`.
    """
    obj = load_object(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a weights file (top level is {type(obj).__name__}, expected a dict)")
    state: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if key in (NAME_TABLE_KEY, BIG_PARAM_KEY) or not isinstance(key, str):
            continue
        if (
            isinstance(value, tuple)
            and len(value) == 2
            and isinstance(value[0], str)
            and isinstance(value[1], np.ndarray)
        ):
            value = value[1]
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "fc" and not np.isfinite(value).all():
                # NaN weights would predict class 0 with score nan: a diverged or damaged file, never usable
                raise CheckpointError(
                    f"{path}: tensor {preview(key, 100)} holds NaN or infinite values (a diverged "
                    "or damaged checkpoint); use an earlier checkpoint"
                )
            state[key] = value
    if not state:
        raise CheckpointError(f"{path}: not a weights file (it holds no tensors)")
    return state


BEST_NAME = "TSN_best.pdparams"


def resolve_weights(path: str | os.PathLike, flag: str = "--weights") -> tuple[Path, str | None]:
    """The weights file a ``--weights`` value means, and a note to show when it is not the value itself.

    A training output folder means its ``TSN_best.pdparams`` (the note says so); a ``.pdopt`` is optimizer state,
    so the error names the ``.pdparams`` beside it. A missing path raises :class:`ConfigError` naming `flag`.
    An ``http(s)://`` URL or a known name (:mod:`tsn_cli.model.hub`) means its verified file in the download cache.
    """
    from tsn_cli.errors import ConfigError
    from tsn_cli.model.hub import fetch, remote_source

    remote = remote_source(str(path))
    if remote is not None:
        got = fetch(remote)
        return got.path, f"{flag} {path}: {'downloaded to' if got.downloaded else 'cached at'} {got.path}"
    p = Path(path)
    if p.is_dir():
        best = p / BEST_NAME
        if best.is_file():
            return best, f"{flag} {p} is a folder: using its {BEST_NAME}"
        if (p / "tsn.yaml").is_file():
            raise ConfigError(f"{flag}: {p} is a `tsn export` folder; predict with --model {p}")
        found = sorted(f.name for f in p.glob("*.pdparams"))
        hint = f" (it has {', '.join(found[:3])}{', ...' if len(found) > 3 else ''}: give one of them)" if found else ""
        raise ConfigError(f"{flag}: {p} is a folder without {BEST_NAME}{hint}")
    if p.suffix == ".pdopt":
        params = p.with_suffix(".pdparams")
        there = "" if params.is_file() else " (not found beside it)"
        raise ConfigError(f"{flag}: {p} is optimizer state (for --resume), not model weights; use {params}{there}")
    if not p.is_file():
        from tsn_cli.fsutil import special_kind

        kind = special_kind(p)
        raise ConfigError(f"{flag}: {p} is {kind}, not a weights file" if kind else f"{flag}: file not found: {p}")
    return p, None


# ----------------------------------------------------------------------------------------- writing
def _to_numpy(value):
    """Tensor / array-like -> numpy array; containers recursively; scalars and strings unchanged."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    if isinstance(value, (str, bytes, int, float, bool, type(None), np.generic)):
        return value
    if hasattr(value, "numpy"):  # paddle.Tensor (also on GPU: .numpy() copies to host)
        return np.asarray(value.numpy())
    raise TsnError(f"cannot save a value of type {type(value).__name__} in a checkpoint")


class _CompatPickler(pickle._Pickler):
    """Pickler writing ``numpy.core.multiarray`` globals (readable by numpy 1.x and 2.x alike).

    The pure-Python pickler is used because its ``save_global`` can be overridden (the C one checks that the
    global's ``__module__`` spelling resolves to the same object). Arrays are written as one bytes blob each,
    so a ResNet-50 state dict takes ~0.5 s (C pickler: ~0.3 s).
    """

    _RENAME = {"numpy._core.multiarray": "numpy.core.multiarray"}

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", None)
        if module in self._RENAME and self.proto >= 4:
            qual = name or obj.__qualname__
            self.save(self._RENAME[module])
            self.save(qual)
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _pickle_bytes(obj) -> bytes:
    buf = io.BytesIO()
    _CompatPickler(buf, protocol=4).dump(obj)
    return buf.getvalue()


def _write_atomic(path: Path, writer) -> None:
    from tsn_cli.fsutil import atomic_path

    with atomic_path(path) as tmp:
        writer(tmp)


def save_state(state: dict, path: str | os.PathLike) -> Path:
    """Write a state dict (``{key: Tensor | ndarray}``) atomically and return the path.

    ``.safetensors`` suffix -> safetensors; anything else -> the pickle ``paddle.save(model.state_dict())``
    writes (plain dict of numpy arrays, protocol 4), loadable by ``paddle.load`` in Paddle 2.x and 3.x and so by
    PaddleVideo's ``set_state_dict``/``load_ckpt``.
    """
    path = Path(path)
    arrays = {}
    for key, value in state.items():
        if key in (NAME_TABLE_KEY, BIG_PARAM_KEY):
            continue
        arr = _to_numpy(value)
        if not isinstance(arr, np.ndarray):
            raise TsnError(f"cannot save {key!r}: not a tensor")
        arrays[str(key)] = arr
    if path.suffix == ".safetensors":
        from safetensors.numpy import save as st_save

        blob = st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    else:
        blob = _pickle_bytes(arrays)
    _write_atomic(path, lambda tmp: tmp.write_bytes(blob))
    return path


def save_object(obj: Any, path: str | os.PathLike) -> Path:
    """Write a nested object (e.g. ``optimizer.state_dict()`` with its ``LR_Scheduler`` dict) atomically.

    Tensors become numpy arrays, containers and scalars are kept: the layout ``paddle.save`` gives a
    ``.pdopt``, readable by ``paddle.load`` and by :func:`load_object`.
    """
    path = Path(path)
    blob = _pickle_bytes(_to_numpy(obj))
    _write_atomic(path, lambda tmp: tmp.write_bytes(blob))
    return path


# ----------------------------------------------------------------------------------------- loading into a model
@dataclass
class LoadReport:
    """What :func:`load_weights` did. Keys are the model's structured names."""

    path: str
    part: str
    loaded: list[str] = field(default_factory=list)
    skipped_shape: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, file shape, model shape)
    missing: list[str] = field(default_factory=list)  # model tensors the file does not have (keep their init)
    unexpected: list[str] = field(default_factory=list)  # file tensors the model does not use (ignored)

    @property
    def total(self) -> int:
        """Number of model tensors that were targeted."""
        return len(self.loaded) + len(self.skipped_shape) + len(self.missing)

    def summary(self) -> str:
        """One line: 'loaded 265/267 tensors; skipped 2 for shape (head.fc.weight [2048, 400] vs ...); ...'."""
        parts = [f"loaded {len(self.loaded)}/{self.total} tensors"]
        if self.skipped_shape:
            shown = ", ".join(f"{k} {list(fs)} vs {list(ms)}" for k, fs, ms in self.skipped_shape[:2])
            more = f", +{len(self.skipped_shape) - 2} more" if len(self.skipped_shape) > 2 else ""
            parts.append(f"skipped {len(self.skipped_shape)} for shape ({shown}{more})")
        else:
            parts.append("skipped 0 for shape")
        parts.append(f"missing {len(self.missing)}" + (f" ({_few(self.missing)})" if self.missing else ""))
        parts.append(f"unexpected {len(self.unexpected)}" + (f" ({_few(self.unexpected)})" if self.unexpected else ""))
        return "; ".join(parts)

    def finetune_note(self) -> str:
        """One line for fine-tuning: what loaded, which model tensors keep their random init and why."""
        what = "backbone tensors" if self.part == "backbone" else "tensors"
        parts = [f"loaded {len(self.loaded)}/{self.total} {what}"]
        left = [k for k, _, _ in self.skipped_shape] + self.missing
        if left:
            parts.append(f"left at random init: {_few(left, 2)} ({self._why_left()})")
        if self.part == "backbone":
            parts.append("the head starts from random init (a backbone file has none)")
        if self.unexpected:
            parts.append(f"ignored {len(self.unexpected)} file tensors the model lacks ({_few(self.unexpected, 2)})")
        return "; ".join(parts)

    def _why_left(self) -> str:
        reasons = []
        head = [(k, fs, ms) for k, fs, ms in self.skipped_shape if k.startswith("head.fc.")]
        if head:
            _, fs, ms = head[0]
            reasons.append(f"the checkpoint has {fs[-1]} classes, the model {ms[-1]}: a new head is trained")
        other = [item for item in self.skipped_shape if not item[0].startswith("head.fc.")]
        if other:
            k, fs, ms = other[0]
            reasons.append(f"{len(other)} of other shape, e.g. {k} {list(fs)} vs {list(ms)}")
        if self.missing:
            reasons.append(f"{len(self.missing)} not in the file")
        return "; ".join(reasons)


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f", +{len(keys) - n} more" if len(keys) > n else "")


def _strip_known_prefixes(key: str) -> str:
    for prefix in ("model.", "module."):  # wrappers some tools add (DataParallel etc.)
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


_BACKBONE_KEY = re.compile(r"^(backbone\.)?(conv\.|res\d)")


def _looks_backbone(key: str) -> bool:
    """True for ResNet-backbone-style keys (``conv.*``, ``res2a.*``, with or without ``backbone.``)."""
    return bool(_BACKBONE_KEY.match(key))


def match_state(
    model_shapes: dict[str, tuple], state: dict[str, np.ndarray], part: str = "full", path: str = ""
) -> tuple[dict[str, np.ndarray], LoadReport]:
    """Pair file tensors with model keys (pure numpy; no paddle). Returns (values to set, report).

    ``part="backbone"``: only ``backbone.*`` model keys are targeted; the file may name them with or without the
    ``backbone.`` prefix; everything else in the file (an ImageNet classifier, a TSN head) is unexpected.
    ``part="full"``: every model key; a backbone key missing from the file is also looked up without its prefix.
    """
    if part not in ("full", "backbone"):
        raise ValueError(f"part must be 'full' or 'backbone', not {part!r}")
    file_state = {_strip_known_prefixes(k): v for k, v in state.items()}
    report = LoadReport(path=str(path), part=part)
    used: set[str] = set()
    values: dict[str, np.ndarray] = {}
    for key, shape in model_shapes.items():
        if part == "backbone" and not key.startswith("backbone."):
            continue
        candidates = [key]
        if key.startswith("backbone."):
            bare = key[len("backbone.") :]
            candidates = [bare, key] if part == "backbone" else [key, bare]
        src = next((c for c in candidates if c in file_state), None)
        if src is None:
            report.missing.append(key)
            continue
        used.add(src)
        arr = file_state[src]
        if tuple(arr.shape) != tuple(shape):
            report.skipped_shape.append((key, tuple(int(s) for s in arr.shape), tuple(int(s) for s in shape)))
            continue
        values[key] = arr
        report.loaded.append(key)
    report.unexpected = [k for k in file_state if k not in used]
    return values, report


STRICT_FIX = (
    "use the settings the checkpoint was saved with (its config.yaml, or drop --depth/--num-classes), "
    "or fine-tune it to new ones with `tsn train --weights`"
)


def strict_error(report: LoadReport, state: dict, model, path, fix: str | None) -> CheckpointError | None:
    """The one-line error for a checkpoint that does not fill `model` exactly, or None when it does.

    Names the first tensor that does not fit with both shapes (a class-count difference in words), what the
    checkpoint is when its architecture differs from the model's, and the fix.
    """
    from tsn_cli.model.arch import infer_architecture

    extra = [k for k in report.unexpected if _looks_backbone(k) or k.startswith("head.")]
    n_bad = len(report.skipped_shape) + len(report.missing) + len(extra)
    if n_bad == 0:
        return None
    if report.skipped_shape:
        k, fs, ms = report.skipped_shape[0]
        what = f"{k} is {list(fs)} in the checkpoint, {list(ms)} in the model"
        if k.startswith("head.fc."):
            what += f" (the checkpoint has {fs[-1]} classes, the model {ms[-1]})"
    elif report.missing:
        k = report.missing[0]
        what = f"{k} is not in the checkpoint"
        if all(m.startswith("head.") for m in report.missing):
            what += " (a backbone-only file such as ImageNet weights? those go to `tsn train --pretrained`)"
    else:
        what = f"the checkpoint has {extra[0]}, which the model does not"
    if n_bad > 1:
        what += f" (+{n_bad - 1} more tensor{'s' if n_bad > 2 else ''} that do not fit)"
    arch = infer_architecture(state)
    m_depth, m_classes = getattr(model, "depth", None), getattr(model, "num_classes", None)
    if arch.blocks and arch.depth != m_depth:  # another depth: say what the file is, not just one tensor
        what += f"; the checkpoint is {arch.describe()}, the model ResNet-{m_depth}, {m_classes} classes"
    return CheckpointError(f"{path}: {what}; {fix or STRICT_FIX}")


def load_weights(
    model,
    path: str | os.PathLike,
    part: str = "full",
    min_fraction: float = 0.5,
    strict: bool = False,
    fix: str | None = None,
) -> LoadReport:
    """Load a weights file into `model` (a TSN) and report what matched.

    ``strict=True`` (eval, export, predict): every model tensor must come from the file with its shape, and the
    file must not hold backbone/head tensors the model lacks; otherwise :class:`CheckpointError` names the first
    tensor that does not fit, both shapes and the fix (`fix`, or a default), and the model is left unchanged.
    The lenient default is for fine-tuning (`tsn train --weights/--pretrained`):
    shape-mismatched tensors (a 400-class FC into a 101-class model) are skipped and listed; missing tensors keep
    their initial values; extra file tensors are ignored. Raises :class:`CheckpointError` — and changes nothing
    in the model — when the file is unreadable/unsafe or is of another architecture: fewer than `min_fraction`
    of the targeted tensors (by count or by number of values) load, or more than 5% of the backbone's tensors
    are missing from the file, have other shapes, or the file has that many backbone tensors the model lacks
    (ResNet depths share many names, so the count test alone would let a ResNet-34 file into a ResNet-18).
    """
    state = load_state(path)
    model_state = model.state_dict()
    shapes = {k: tuple(int(s) for s in v.shape) for k, v in model_state.items()}
    values, report = match_state(shapes, state, part, str(path))
    if strict:
        err = strict_error(report, state, model, path, fix)
        if err is not None:
            raise err
    n_target = report.total
    size_target = sum(int(np.prod(shapes[k])) for k in shapes if part == "full" or k.startswith("backbone."))
    size_loaded = sum(int(np.prod(shapes[k])) for k in report.loaded)
    n_backbone = sum(1 for k in shapes if k.startswith("backbone."))
    bad_backbone = [item for item in report.skipped_shape if item[0].startswith("backbone.")]
    arch = f"this ResNet-{getattr(model, 'depth', '?')} model"
    if n_target == 0 or len(report.loaded) < min_fraction * n_target or size_loaded < min_fraction * size_target:
        hint = ""
        if report.skipped_shape:
            k, fs, ms = report.skipped_shape[0]
            hint = f"; e.g. {k}: file {list(fs)} vs model {list(ms)}"
        elif report.missing:
            hint = f"; e.g. {report.missing[0]} is not in the file"
        what = "backbone tensors" if part == "backbone" else "tensors"
        raise CheckpointError(
            f"{path}: only {len(report.loaded)} of {n_target} {what} match {arch} "
            f"(a checkpoint of another architecture?){hint}"
        )
    extra_backbone = [k for k in report.unexpected if _looks_backbone(k)]
    if len(extra_backbone) > 0.05 * n_backbone:
        # e.g. a ResNet-34 file into a ResNet-18: every ResNet-18 name exists there with the same shape
        raise CheckpointError(
            f"{path}: the file has {len(extra_backbone)} backbone tensors that {arch} does not have "
            f"(a checkpoint of another depth or architecture?); e.g. {extra_backbone[0]}"
        )
    missing_backbone = [k for k in report.missing if k.startswith("backbone.")]
    if len(missing_backbone) > 0.05 * n_backbone:
        # e.g. a ResNet-18 file into a ResNet-34: the shared names load, the extra blocks would stay random
        raise CheckpointError(
            f"{path}: {len(missing_backbone)} backbone tensors of {arch} are not in the file "
            f"(a checkpoint of another depth or architecture?); e.g. {missing_backbone[0]}"
        )
    if len(bad_backbone) > 0.05 * n_backbone:
        # The backbone never changes shape between datasets, so many mismatches mean another depth/architecture
        # (ResNet-50 <-> ResNet-34 share many names and BN shapes, so the count test alone would pass).
        k, fs, ms = bad_backbone[0]
        raise CheckpointError(
            f"{path}: {len(bad_backbone)} backbone tensors have other shapes than in {arch} "
            f"(a checkpoint of another depth or architecture?); e.g. {k}: file {list(fs)} vs model {list(ms)}"
        )
    for key, arr in values.items():
        target = model_state[key]
        arr = np.ascontiguousarray(arr)
        want = str(target.dtype).replace("paddle.", "")
        if want in ("float32", "float64", "float16") and arr.dtype != np.dtype(want):
            arr = arr.astype(want)
        target.set_value(arr)
    return report


def differing_tensors(model, path: str | os.PathLike) -> list[str]:
    """Model tensors whose values are not exactly the file's (after loading's dtype cast), or that the file lacks.

    [] means the model holds the checkpoint's weights; `tsn export` checks this before it compares logits, so a
    model with a freshly initialised head can never pass as the checkpoint.
    """
    model_state = model.state_dict()
    shapes = {k: tuple(int(s) for s in v.shape) for k, v in model_state.items()}
    values, report = match_state(shapes, load_state(path), "full", str(path))
    bad = list(report.missing) + [k for k, _, _ in report.skipped_shape]
    for key, arr in values.items():
        have = np.asarray(model_state[key].numpy())
        if not np.array_equal(have, np.asarray(arr).astype(have.dtype, copy=False)):
            bad.append(key)
    return bad

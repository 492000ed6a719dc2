"""Prediction for video files: test-time views -> inference engine -> softmax top-k.

The engines (`PaddleEngine`, `OrtEngine`, `DygraphEngine`) live in `tsn_cli.deploy.engines`, the export folder's
files and `tsn.yaml` in `tsn_cli.deploy.artifact`. Decoding and preprocessing of the next videos run in worker
processes while the current one is inferred (`tsn_cli.deploy.prefetch`: processes, so paddle.inference's `run()`,
which holds the GIL, does not stall them; library callers using it from a script need the usual
`if __name__ == "__main__":` guard of multiprocessing), and one engine is reused for every input. Views are run
in equal chunks of at most `DEFAULT_BATCH_VIEWS` (faster than one huge batch on CPU; the averaged logits are the
same).

Inputs are opened like eval's (``verify=True``): a file that does not decode is an error ("not a video (no
decodable video stream)"); a video that decodes only partly (truncated) is predicted from the frames that decode
and carries the reason in `Prediction.warnings` -- a prediction from a third of a video may still be useful,
but never silently.
"""

from __future__ import annotations

import glob
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from tsn_cli.deploy.artifact import read_meta
from tsn_cli.deploy.engines import DygraphEngine, choose_backend, make_engine
from tsn_cli.deploy.prefetch import default_workers, prefetch
from tsn_cli.engine.metrics import softmax
from tsn_cli.errors import DecodeError, TsnError, first_line, raise_if_interrupted
from tsn_cli.ui import plain

VIDEO_EXTS = {
    ".avi",
    ".mp4",
    ".mkv",
    ".mov",
    ".webm",
    ".flv",
    ".mpg",
    ".mpeg",
    ".m4v",
    ".wmv",
    ".3gp",
    ".ts",
    ".mts",
    ".m2ts",
    ".ogv",
    ".vob",
    ".asf",
    ".divx",
}


def _looks_like_video(path: Path) -> bool:
    """Whether an extension-less file starts like a video container (AVI, MP4/MOV, Matroska/WebM, MPEG-TS/PS,
    Ogg, FLV, ASF): such a file in a folder is predicted (read by content), anything else is skipped and reported."""
    try:
        with open(path, "rb", buffering=0) as fh:  # a regular file (rglob's is_file), a few bytes only
            head = fh.read(400)
    except OSError:
        return False
    return (
        (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
        or head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide")
        or head[:4] in (b"\x1a\x45\xdf\xa3", b"OggS", b"\x00\x00\x01\xba", b"\x30\x26\xb2\x75")
        or head[:3] == b"FLV"
        or (len(head) > 376 and head[0] == head[188] == head[376] == 0x47)
    )


# Views per engine run for paddle.inference / ONNX Runtime on CPU. Measured here (ResNet-50, 224, 2 cores,
# paddle.inference + oneDNN, same process, interleaved): 8 views per run 8.6-9.2 frames/s, 10 views 8.3,
# 25 views 7.4 on a machine shared with other jobs; quiet: 25 views 21.6, 50 19.3, all 250 at once 13.6
# (activations fall out of cache). 10 is as fast as 8 and splits 25x10 = 250 views into 25 equal runs (one
# input shape, one set of oneDNN primitives). See benchmarks/bench_predict.py.
DEFAULT_BATCH_VIEWS = 10


def chunk_bounds(v: int, limit: int) -> list[tuple[int, int]]:
    """Split ``v`` views into the fewest runs of at most ``limit``, of near-equal size.

    Equal sizes keep the number of distinct input shapes (and so of oneDNN primitive builds) small:
    250 views with limit 10 -> 25 x 10; 30 views with limit 25 -> 2 x 15 rather than 25 + 5.
    """
    n = -(-v // max(1, limit))
    edges = [round(i * v / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n) if edges[i + 1] > edges[i]]


@dataclass
class Inputs:
    """What `expand_inputs` found: the paths to predict, and per folder the files left out (no video extension)."""

    files: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. a list file's bad lines, "FILE:LINE: reason"

    def skip_messages(self) -> list[str]:
        """One line per folder with skipped files: "DIR: skipped 2 files (not a video extension: 1 .json, 1 .txt)"."""
        out = []
        for folder, names in self.skipped.items():
            counts = Counter(Path(n).suffix.lower() or "no extension" for n in names)
            why = ", ".join(f"{c} {ext}" for ext, c in sorted(counts.items()))
            plural = "s" if len(names) != 1 else ""
            out.append(f"{folder}: skipped {len(names)} file{plural} (not a video extension: {why})")
        return out + self.notes


def is_frame_folder(path: Path) -> bool:
    """A folder holding extracted frames (`img_00001.jpg`, ...: PaddleVideo's rawframes layout)."""
    from tsn_cli.constants import FRAME_TEMPLATE

    return (Path(path) / FRAME_TEMPLATE.format(1)).is_file()


def expand_inputs(items: Iterable[str], lists: Iterable[str] = ()) -> Inputs:
    """Files, folders (their videos and frame folders, sorted), globs and list files -> paths. A name that
    matches nothing stays, to fail later.

    A folder with `img_00001.jpg` is one input (a frame folder), as is every such folder inside a folder.
    A folder's other files without a video extension (`VIDEO_EXTS`) are left out and recorded in
    `Inputs.skipped`; a file named explicitly is always tried (it is read by content). `lists` are PaddleVideo
    list files (`path label` or `frame_dir num_frames label`); their paths are taken in order."""
    out = Inputs()
    for item in items:
        p = Path(item)
        if p.is_dir() and is_frame_folder(p):
            out.files.append(item)
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file())
            frame_dirs = {f.parent for f in found if is_frame_folder(f.parent)}
            videos = [
                f
                for f in found
                if f.parent not in frame_dirs
                and (f.suffix.lower() in VIDEO_EXTS or (not f.suffix and _looks_like_video(f)))
            ]
            out.files.extend(sorted([str(f) for f in videos] + [str(d) for d in frame_dirs]))
            chosen = set(videos)
            skipped = [str(f) for f in found if f not in chosen and f.parent not in frame_dirs]
            if skipped:
                out.skipped[item] = skipped
        elif any(c in item for c in "*?[") and not p.exists():
            out.files.extend(sorted(glob.glob(item, recursive=True)))
        else:
            out.files.append(item)
    for lst in lists:
        res = read_any_list(lst)
        out.files.extend(r.path for r in res.records)
        out.notes.extend(f"skipped {b}" for b in res.bad_lines)
    return out


def read_any_list(list_file: str):
    """`read_list` of a PaddleVideo list file, video (`path label`) or frames (`frame_dir num_frames label`)
    format -- frames when the first entry's path without its last two fields is a folder. Raises DataError."""
    from tsn_cli.data.lists import _read_lines, read_list

    first = next((ln.split() for ln in _read_lines(Path(list_file)) if ln.strip() and not ln.startswith("#")), [])
    fmt = "video"
    if len(first) >= 3 and all(f.isdigit() for f in first[-2:]):
        base = " ".join(first[:-2])
        if Path(base).is_dir() or (Path(list_file).parent / base).is_dir():
            fmt = "frames"
    return read_list(list_file, fmt=fmt)


@dataclass
class Prediction:
    """One input's result: top-k (with `warnings` when the video decoded only partly) or an error."""

    path: str
    top_k: list[dict] = field(default_factory=list)
    scores: Optional[np.ndarray] = None
    error: Optional[str] = None
    timings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_json(self, all_scores: bool = False) -> dict:
        """`{"path", "top_k": [{"class_id", "label", "score"}], "warnings": [str]}` (+ `"scores"`), or
        `{"path", "error"}`. `warnings` is always present (empty for a clean input)."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        d = {"path": self.path, "top_k": self.top_k, "warnings": list(self.warnings)}
        if all_scores and self.scores is not None:
            d["scores"] = [float(s) for s in self.scores]
        return d


def view_transform(p):
    """The test-time transform (resize, crops, normalisation) of a `Predictor` -- or of any object with its view
    settings, such as the one a decoding child rebuilds from `_view_params` -- for frames read elsewhere (the
    timeline's windows, a live buffer)."""
    from tsn_cli.data.transforms import TestTransform

    return TestTransform(short_side=p.short_side, target_size=p.target_size, crops=p.crops, mean=p.mean, std=p.std)


class Predictor:
    """Views + engine + top-k. `predict(paths)` yields one `Prediction` per path, in order."""

    def __init__(
        self,
        engine,
        *,
        seg_num: int,
        crops: int,
        short_side: int,
        target_size: int,
        mean,
        std,
        label_names: list[str],
        top_k: int = 5,
        batch_views: Optional[int] = None,
        fmt: str = "video",
        frame_template: Optional[str] = None,
        decode_workers: Optional[int] = None,
    ):
        self.engine = engine
        self.decode_workers = decode_workers  # None: sized to the free cores (`decode_workers_for`)
        # eval's lists may hold frame folders (fmt "frames"); predict's inputs are video files.
        self.fmt, self.frame_template = fmt, frame_template
        self.seg_num, self.crops = seg_num, crops
        self.short_side, self.target_size = short_side, target_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.names = label_names
        self.top_k = top_k
        self.batch_views = batch_views

    @classmethod
    def from_export(
        cls,
        model_dir: Path | str,
        *,
        backend: str = "paddle",
        precision: str = "fp32",
        device: str = "auto",
        threads: Optional[int] = None,
        tensorrt: bool = False,
        seg_num: Optional[int] = None,
        crops: Optional[int] = None,
        top_k: int = 5,
        batch_views: Optional[int] = None,
    ) -> "Predictor":
        """A Predictor for a `tsn export` folder (settings and class names from its tsn.yaml), as `tsn predict
        --model`: `backend` "paddle" (paddle.inference on `device`: auto, cpu, gpu or gpu:N), "onnxruntime",
        "openvino" or "auto"; `precision` "fp32" or "int8" (the `tsn export --int8` model)."""
        if backend == "paddle":
            from tsn_cli.runtime import resolve_device

            device = resolve_device(device or "auto")
        return predictor_from_export(
            model_dir,
            backend=backend,
            precision=precision,
            device=device,
            threads=threads,
            tensorrt=tensorrt,
            seg_num=seg_num,
            crops=crops,
            top_k=top_k,
            batch_views=batch_views,
        )

    @classmethod
    def from_weights(
        cls,
        weights: Path | str,
        *,
        config: Optional[Path | str] = None,
        cfg=None,
        labels: Optional[Path | str] = None,
        seg_num: Optional[int] = None,
        crops: Optional[int] = None,
        device: Optional[str] = None,
        top_k: int = 5,
        on_message=None,
    ) -> "Predictor":
        """A Predictor running a checkpoint's dygraph model, as `tsn predict --weights` (no export needed).

        `weights` is a .pdparams/.safetensors file or a training output folder (its TSN_best.pdparams). The
        settings come from `cfg` when given, else from `config` or the config.yaml beside the weights (depth and
        class count from the checkpoint when neither exists); `labels` names the classes."""
        from tsn_cli.engine.runconfig import build_config
        from tsn_cli.model.checkpoint import resolve_weights

        say = on_message or (lambda m: None)
        weights, note = resolve_weights(weights)
        if note:
            say(note)
        if cfg is None:
            cfg = build_config(
                config=config,
                overrides=None,
                weights=weights,
                device=device,
                crops=crops,
                eval_seg_num=seg_num,
                labels=labels,
                on_message=on_message,
            )
        return predictor_from_weights(cfg, weights, seg_num=seg_num, crops=crops, top_k=top_k, on_message=on_message)

    def preprocess(self, path) -> tuple[np.ndarray, dict, list[str]]:
        """Decode the sampled frames of `path` (a file, or a list's `VideoRecord`) and build the [1, V, 3, H, W]
        input; also the stage timings and the source's warnings (e.g. a truncated video sampled over the frames
        that decode)."""
        from tsn_cli.constants import FRAME_TEMPLATE
        from tsn_cli.data.video import open_source
        from tsn_cli.data.views import test_clip

        t0 = time.perf_counter()
        p = Path(getattr(path, "path", path))
        if not p.exists():
            raise DecodeError(str(p), "file not found")
        fmt = self.fmt
        if p.is_dir() and fmt == "video":
            if not is_frame_folder(p):
                raise DecodeError(str(p), "is a folder, neither a video nor a frame folder (img_00001.jpg ...)")
            fmt = "frames"  # a frame folder among predict's inputs
        source = path if self.fmt == "frames" else str(p)
        with open_source(source, fmt, self.frame_template or FRAME_TEMPLATE, verify=True) as src:
            t1 = time.perf_counter()
            clip = test_clip(src, self.seg_num, self.crops, self.short_side, self.target_size, self.mean, self.std)
            warnings = list(src.warnings)
        t2 = time.perf_counter()
        return clip[None], {"decode": t1 - t0, "preprocess": t2 - t1}, warnings

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits [C] for one video; views are split into chunks when `batch_views` is set (same result)."""
        v = x.shape[1]
        if not self.batch_views or v <= self.batch_views:
            return self.engine.run(x)[0]
        # Mean of per-chunk logits weighted by chunk size equals the logits of all views together (the
        # consensus is a mean and the head is linear).
        total = None
        for s, e in chunk_bounds(v, self.batch_views):
            out = self.engine.run(x[:, s:e])[0].astype(np.float64) * (e - s)
            total = out if total is None else total + out
        return (total / v).astype(np.float32)

    def _result(self, path: str, logits: np.ndarray, timings: dict, warnings: list[str]) -> Prediction:
        if not np.isfinite(logits).all():  # broken weights in the export: never a class with score nan
            raise TsnError(
                f"{plain(path)}: the model's output for this input is NaN or infinite; its weights are "
                "broken (export it again from a good checkpoint)"
            )
        t0 = time.perf_counter()
        probs = softmax(logits)
        k = min(self.top_k, len(probs))
        top = np.argsort(-probs, kind="stable")[:k]
        items = [
            {
                "class_id": int(i),
                "label": self.names[int(i)] if int(i) < len(self.names) else str(int(i)),
                "score": float(probs[i]),
            }
            for i in top
        ]
        timings["postprocess"] = time.perf_counter() - t0
        return Prediction(path, items, probs, timings=timings, warnings=list(warnings))

    def _prepare(self, path) -> tuple:
        """(path, x, timings, warnings, error) for one input; a bad input is reported, never raised."""
        try:
            return (path, *self.preprocess(path), None)
        except Exception as exc:  # noqa: BLE001 - a bad input is reported, never a crash
            raise_if_interrupted(exc)
            reason = exc.reason if isinstance(exc, DecodeError) else f"{type(exc).__name__}: {first_line(exc)}"
            return (path, None, {}, [], reason)

    def _view_params(self) -> dict:
        """The view settings, to rebuild an engine-less Predictor in the prefetch process."""
        return {
            "seg_num": self.seg_num,
            "crops": self.crops,
            "short_side": self.short_side,
            "target_size": self.target_size,
            "mean": self.mean,
            "std": self.std,
            "fmt": self.fmt,
            "frame_template": self.frame_template,
        }

    def decode_workers_for(self, n_inputs: int) -> int:
        """Decode worker processes for `n_inputs` inputs: `decode_workers` when set, else `default_workers` (the
        cores the engine's math threads leave free, at least 1; 0 for one input)."""
        if self.decode_workers is not None:
            return max(0, int(self.decode_workers))
        return default_workers(getattr(self.engine, "cpu_threads", None), n_inputs)

    def prepared(self, paths: list, workers: Optional[int] = None) -> Iterator[tuple]:
        """(path, x, timings, warnings, error) for every path (or `VideoRecord`), in order (`x` is None on error),
        decoded and preprocessed by `workers` processes (default `decode_workers_for`) while the caller runs the
        previous inputs; 0 decodes here, one after the other. See `tsn_cli.deploy.prefetch`. Close the iterator (or
        exhaust it) to stop the workers."""
        workers = self.decode_workers_for(len(paths)) if workers is None else workers
        return prefetch(list(paths), self._view_params(), workers, self._prepare)

    def predict(self, paths: Iterable[str | Path] | str | Path, workers: Optional[int] = None) -> Iterator[Prediction]:
        """Predict every path (or the one path given), in order, while the next inputs are decoded and
        preprocessed by worker processes (see `prepared`). A bad input yields a `Prediction` with `error` set,
        never an exception. Close the iterator when stopping early (`contextlib.closing`)."""
        paths = [str(paths)] if isinstance(paths, (str, Path)) else [str(p) for p in paths]
        items = self.prepared(paths, workers)
        try:
            for path, x, timings, warnings, error in items:
                if error is not None:
                    yield Prediction(path, error=error)
                    continue
                t0 = time.perf_counter()
                logits = self.infer(x)
                timings["inference"] = time.perf_counter() - t0
                yield self._result(path, logits, timings, warnings)
        finally:
            items.close()


def predictor_from_export(
    model_dir: Path | str,
    *,
    backend: str = "paddle",
    precision: str = "fp32",
    device: str = "cpu",
    threads: Optional[int] = None,
    tensorrt: bool = False,
    seg_num=None,
    crops=None,
    top_k: int = 5,
    batch_views: Optional[int] = None,
    on_message=None,
    **view_kwargs,
) -> Predictor:
    """A Predictor for a `tsn export` folder (settings and class names from its tsn.yaml).

    `backend` is "paddle" (paddle.inference), "onnxruntime", "openvino" or "auto" (`choose_backend`; the
    choice is reported through `on_message` and kept in `Predictor.backend`); `precision` "fp32" or "int8"
    (the `tsn export --int8` model). `batch_views` is the most views per engine run (default
    `DEFAULT_BATCH_VIEWS`, the fastest on CPU; results do not depend on it). `view_kwargs`: `fmt`,
    `frame_template` of the inputs.
    """
    meta = read_meta(model_dir)
    batch_views = batch_views or DEFAULT_BATCH_VIEWS
    if backend == "auto":
        backend, why = choose_backend(meta, model_dir, precision)
        if on_message:
            on_message(f"--backend auto: {backend} ({why})")
    engine = make_engine(
        model_dir,
        backend,
        precision=precision,
        device=device,
        threads=threads,
        tensorrt=tensorrt,
        max_views=batch_views,
    )
    pred = Predictor(
        engine,
        seg_num=seg_num or meta["seg_num"],
        crops=crops or meta["crops"],
        short_side=meta["short_side"],
        target_size=meta["target_size"],
        mean=meta["mean"],
        std=meta["std"],
        label_names=list(meta.get("label_names") or []),
        top_k=top_k,
        batch_views=batch_views,
        **view_kwargs,
    )
    pred.backend, pred.precision = backend, precision
    return pred


def predictor_from_weights(
    cfg, weights: Path | str, *, seg_num=None, crops=None, top_k: int = 5, on_message=None
) -> Predictor:
    """A Predictor running the dygraph model of a checkpoint."""
    from tsn_cli.engine.build import label_names

    engine = DygraphEngine(cfg, weights, on_message)
    a = cfg.augment
    return Predictor(
        engine,
        seg_num=seg_num or cfg.test_seg_num,
        crops=crops or cfg.eval.crops,
        short_side=a.short_side,
        target_size=a.target_size,
        mean=a.mean,
        std=a.std,
        label_names=label_names(cfg),
        top_k=top_k,
        batch_views=cfg.eval.max_views_per_batch,
    )

"""The `tsn export` folder: its file names and its `tsn.yaml` description, read and written in one place.

A folder holds `TSN.json` (Paddle 3) or `TSN.pdmodel` (Paddle 2) with `TSN.pdiparams`, optionally `TSN.onnx` and
the int8 `TSN.int8.onnx`,
`tsn.yaml` (what predict needs: views, preprocessing, class names) and the run's `config.yaml`. Export writes
it, the inference engines and predict read it; this module imports neither of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tsn_cli.config import Crops, Depth, Mean, Side, Std, crop_fits, read_yaml_file, validation_message
from tsn_cli.errors import TsnError
from tsn_cli.fsutil import atomic_write_text

MODEL_STEM = "TSN"
META_NAME = "tsn.yaml"
FORMAT = "tsn-export/1"
INPUT_NAME = "x"
PARAMS_NAME = f"{MODEL_STEM}.pdiparams"
ONNX_NAME = f"{MODEL_STEM}.onnx"
INT8_ONNX_NAME = f"{MODEL_STEM}.int8.onnx"  # `tsn export --int8`: static int8 (QDQ) ONNX model


def model_files(model_dir: Path) -> tuple[Path, Path]:
    """(program file, params file) of an exported model: Paddle 3 writes .json, Paddle 2 .pdmodel."""
    model_dir = Path(model_dir)
    params = model_dir / PARAMS_NAME
    for ext in (".json", ".pdmodel"):
        prog = model_dir / f"{MODEL_STEM}{ext}"
        if prog.is_file() and params.is_file():
            return prog, params
    raise TsnError(
        f"{model_dir}: no exported model ({MODEL_STEM}.json or .pdmodel + {PARAMS_NAME}); run `tsn export` first"
    )


def make_meta(cfg, *, seg_num: int, crops: int, label_names: list[str]) -> dict:
    """The `tsn.yaml` description of a model exported from `cfg` for `seg_num` x `crops` test views."""
    t = cfg.augment.target_size
    return {
        "format": FORMAT,
        "model": {"depth": cfg.model.depth, "num_classes": cfg.model.num_classes, "train_seg_num": cfg.model.seg_num},
        "num_classes": cfg.model.num_classes,
        "seg_num": seg_num,
        "crops": crops,
        "average": cfg.eval.average,
        "short_side": cfg.augment.short_side,
        "target_size": t,
        "mean": list(cfg.augment.mean),
        "std": list(cfg.augment.std),
        "input_name": INPUT_NAME,
        "input_shape": ["N", "seg_num*crops", 3, t, t],
        "output": "logits (mean over views)",
        "label_names": label_names,
    }


def write_meta(model_dir: Path, meta: dict) -> Path:
    """Write `meta` as the folder's `tsn.yaml` (atomically); returns its path."""
    path = Path(model_dir) / META_NAME
    atomic_write_text(path, yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    return path


class _MetaModel(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    depth: Optional[Depth] = None
    num_classes: Optional[int] = Field(None, ge=1)
    train_seg_num: Optional[int] = Field(None, ge=1)


class ExportMeta(BaseModel):
    """`tsn.yaml` as predict trusts it: the same field types and bounds as a run config (`tsn_cli.config`)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    format: Optional[str] = None
    model: Optional[_MetaModel] = None
    num_classes: int = Field(ge=1)
    seg_num: int = Field(ge=1, le=1024)
    crops: Crops
    short_side: Side
    target_size: Side
    mean: Mean
    std: Std
    average: Optional[Literal["logits", "scores"]] = None
    label_names: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self):
        crop_fits(self.target_size, self.short_side)
        if self.label_names and len(self.label_names) != self.num_classes:
            raise ValueError(f"{len(self.label_names)} label_names for num_classes {self.num_classes}")
        return self


def read_meta(model_dir: Path) -> dict:
    """The `tsn.yaml` written beside an exported model, validated (types, bounds, consistency); a bad field is one
    TsnError line naming the file and the field."""
    p = Path(model_dir) / META_NAME
    if not p.exists() and not p.is_symlink():
        raise TsnError(f"{p}: not found; is {model_dir} a `tsn export` folder?")
    meta = read_yaml_file(p, "tsn.yaml", TsnError)
    if not isinstance(meta, dict) or "num_classes" not in meta:
        raise TsnError(f"{p}: not a tsn export description")
    try:
        checked = ExportMeta.model_validate(meta)
    except ValidationError as exc:
        raise TsnError(validation_message(exc, str(p)) + "; re-export the model with `tsn export`") from None
    # the validated values over the file's own dict: a rewrite (export's benchmark) keeps its keys and order
    meta.update(checked.model_dump(include=set(ExportMeta.model_fields), exclude_unset=True))
    _check_input_size(meta, Path(model_dir), p)
    return meta


def graph_input_shape(model_dir: Path) -> list[int] | None:
    """The input shape [N, V, 3, H, W] (-1 for dynamic axes) recorded in a Paddle 3 `TSN.json` graph; None when
    the folder has no such graph (Paddle 2 `.pdmodel`) or its layout is not recognised."""
    import json

    from tsn_cli.fsutil import GIB, read_regular_file

    prog = Path(model_dir) / f"{MODEL_STEM}.json"
    if not prog.is_file():
        return None
    try:
        graph = json.loads(read_regular_file(prog, GIB, "exported graph"))
        for op in graph["program"]["regions"][0]["blocks"][0]["ops"]:
            if not str(op.get("#", "")).endswith(".data"):
                continue
            attrs = {a.get("N"): a.get("AT", {}).get("D") for a in op.get("A", []) if isinstance(a, dict)}
            if attrs.get("name") == INPUT_NAME and isinstance(attrs.get("shape"), list):
                return [int(d) for d in attrs["shape"]]
    except (TsnError, ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
        return None
    return None


def _check_input_size(meta: dict, model_dir: Path, where: Path) -> None:
    """TsnError when the exported graph takes another frame size than `tsn.yaml`'s target_size (a folder that
    mixes two exports): predict would otherwise fail deep inside the engine."""
    shape = graph_input_shape(model_dir)
    if not shape or len(shape) < 2:
        return
    h, w, t = shape[-2], shape[-1], meta["target_size"]
    if (h > 0 and h != t) or (w > 0 and w != t):
        raise TsnError(
            f"{where}: target_size {t} does not match the exported model's input {h}x{w} "
            f"(the folder mixes two exports?); re-export it with `tsn export`"
        )

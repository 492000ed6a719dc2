"""Typed configuration for a whole run: pydantic models, YAML loading and `-o section.key=value` overrides.

Every field maps to one constructor argument somewhere in `tsn_cli` (grep the field name). Unknown keys, wrong
types and missing files are reported as one `ConfigError` line naming the key and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tsn_cli.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """The network: ResNet backbone + TSN head."""

    depth: Literal[18, 34, 50, 101, 152] = 50
    num_classes: int = Field(400, ge=1)
    seg_num: int = Field(3, ge=1, description="segments per clip (frames the network sees)")
    dropout: float = Field(0.4, ge=0.0, lt=1.0)
    fc_std: float = Field(0.01, gt=0.0)
    pretrained: Optional[Path] = Field(None, description="ImageNet backbone weights (.pdparams/.safetensors)")


class DataConfig(_Section):
    """Where the videos or frames are and how the list files are written."""

    format: Literal["video", "frames"] = "video"
    train_list: Optional[Path] = None
    val_list: Optional[Path] = None
    test_list: Optional[Path] = None
    data_root: Optional[Path] = Field(None, description="prefix for relative list paths (default: the list's folder)")
    video_suffix: str = Field("", description="appended to every video path (PaddleVideo's extension-less lists)")
    frame_template: str = "img_{:05}.jpg"
    label_names: Optional[Path] = Field(None, description="'<id> <name>' file; class ids are 0-based")

    @field_validator("frame_template")
    @classmethod
    def _template_formats(cls, v: str) -> str:
        try:
            v.format(1)
        except (IndexError, KeyError, ValueError) as exc:
            raise ValueError(f"must format one frame number, e.g. 'img_{{:05}}.jpg' ({exc})") from None
        return v


class AugmentConfig(_Section):
    """Pre-processing: PaddleVideo's Scale -> MultiScaleCrop/CenterCrop -> flip -> normalise."""

    short_side: int = Field(256, ge=8)
    target_size: int = Field(224, ge=8)
    scales: list[float] = Field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    flip_prob: float = Field(0.5, ge=0.0, le=1.0)
    mean: list[float] = Field(default_factory=lambda: list(IMAGENET_MEAN), min_length=3, max_length=3)
    std: list[float] = Field(default_factory=lambda: list(IMAGENET_STD), min_length=3, max_length=3)

    @model_validator(mode="after")
    def _crop_fits(self):
        if self.target_size > self.short_side:
            raise ValueError(f"target_size ({self.target_size}) must not exceed short_side ({self.short_side})")
        return self


class TrainConfig(_Section):
    """Optimiser and schedule (PaddleVideo's TSN recipe by default)."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=1, description="clips per device per step")
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    lr_boundaries: Optional[list[int]] = Field(None, description="epochs where the LR drops x lr_decay (default 1/3, 2/3)")
    lr_decay: float = Field(0.1, gt=0.0, le=1.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    grad_clip: Optional[float] = Field(40.0, gt=0.0, description="global-norm clip; null disables")
    accum_steps: int = Field(1, ge=1, description="gradient accumulation steps")
    auto_scale_lr: bool = False
    base_batch_size: int = Field(256, ge=1, description="global batch the lr is meant for (with auto_scale_lr)")
    val_interval: int = Field(1, ge=0, description="validate every N epochs (0: never)")
    save_interval: int = Field(1, ge=1)
    log_interval: int = Field(10, ge=1)


class EvalConfig(_Section):
    """Test-time views and batching for eval and predict."""

    seg_num: Optional[int] = Field(None, ge=1, description="segments at test time (default: model.seg_num)")
    crops: Literal[1, 3, 10] = 1
    average: Literal["logits", "scores"] = "logits"
    batch_size: int = Field(8, ge=1)
    max_views_per_batch: int = Field(64, ge=1)


class RuntimeConfig(_Section):
    """Device, workers, seed and output folder."""

    device: str = Field("auto", pattern=r"^(auto|cpu|gpu|gpu:\d+)$")
    workers: int = Field(2, ge=0)
    seed: int = 1234
    output: Path = Path("output/TSN")
    amp: Optional[Literal["fp16", "bf16"]] = None
    amp_level: Literal["O1", "O2"] = "O1"
    threads: Optional[int] = Field(None, ge=1, description="CPU math threads (default: all cores)")


class RunConfig(_Section):
    """A whole run."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    def to_yaml(self) -> str:
        """YAML text that `load_config` reads back to the same config."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def absolute(self) -> "RunConfig":
        """A copy whose file paths are absolute, so a saved config works from any folder."""
        data = self.model_dump()
        for section, keys in (("model", ["pretrained"]), ("data", ["train_list", "val_list", "test_list", "data_root", "label_names"]), ("runtime", ["output"])):
            for key in keys:
                if data[section][key] is not None:
                    data[section][key] = Path(data[section][key]).absolute()
        return RunConfig.model_validate(data)

    def flat(self) -> list[tuple[str, Any]]:
        """(section.key, value) pairs, for the start-of-run table."""
        out = []
        for section, values in self.model_dump(mode="json").items():
            for key, value in values.items():
                out.append((f"{section}.{key}", value))
        return out


# --------------------------------------------------------------------------------------------- loading


def _format_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        section = err["loc"][0] if len(err["loc"]) > 1 else None
        allowed = _allowed_keys(section)
        return f"{source}: unknown key '{loc}' (allowed: {', '.join(allowed)})"
    msg = err["msg"]
    if err["type"] == "literal_error" and "ctx" in err:
        msg = f"must be one of {err['ctx'].get('expected')}"
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    more = f" [+{len(exc.errors()) - 1} more]" if len(exc.errors()) > 1 else ""
    return f"{source}: {loc or 'config'}: {msg}{shown}{more}"


def _allowed_keys(section: str | None) -> list[str]:
    if section is None or section not in RunConfig.model_fields:
        return list(RunConfig.model_fields)
    sub = RunConfig.model_fields[section].annotation
    return [f"{section}.{k}" for k in sub.model_fields]


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    try:
        data = yaml.safe_load(text)  # safe_load: a `!!python/object` tag is an error, never code
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections (model, data, ...)")
    return data


def _resolve_paths(data: dict, base: Path) -> None:
    """Relative paths are relative to where `tsn` runs (as in PaddleVideo); a path that only exists relative to
    the config file's folder is taken from there, so a config can also travel with its lists."""
    path_keys = {
        "model": ["pretrained"],
        "data": ["train_list", "val_list", "test_list", "data_root", "label_names"],
    }
    for section, keys in path_keys.items():
        sec = data.get(section)
        if not isinstance(sec, dict):
            continue
        for key in keys:
            val = sec.get(key)
            if isinstance(val, str) and val and not Path(val).is_absolute():
                if not Path(val).exists() and (base / val).exists():
                    sec[key] = str(base / val)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (['section', 'key'], value parsed as YAML scalar/list)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected section.key=value")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) != 2:
        raise ConfigError(f"override '{item}': key must be section.key (sections: {', '.join(RunConfig.model_fields)})")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, *, base: RunConfig | None = None) -> RunConfig:
    """Load a config: defaults <- YAML file <- `-o` overrides, validated as a whole.

    `base` (e.g. the config saved next to a checkpoint) replaces the defaults when given.
    """
    data: dict = base.model_dump(mode="json") if base is not None else {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        file_data = _read_yaml(path)
        _resolve_paths(file_data, path.parent)
        for section, values in file_data.items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section].update(values)
            else:
                data[section] = values
    touched: list[tuple[str, str]] = []
    for item in overrides or []:
        (section, key), value = parse_override(item)
        if section not in RunConfig.model_fields:
            raise ConfigError(f"override '{item}': unknown section '{section}' (allowed: {', '.join(RunConfig.model_fields)})")
        sec = data.setdefault(section, {})
        if not isinstance(sec, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping")
        sec[key] = value
        touched.append((f"{section}.{key}", item))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        loc = ".".join(str(p) for p in exc.errors()[0]["loc"])
        # Name the override that set the failing key (or its section), else the file.
        for dotted, item in reversed(touched):
            if loc == dotted or loc.startswith(dotted + ".") or dotted.startswith(loc + "."):
                source = f"override -o {item}"
                break
        raise ConfigError(_format_error(exc, source)) from None


def with_values(cfg: RunConfig, values: dict[str, Any], source: str = "option") -> RunConfig:
    """Return a copy with `{'section.key': value}` applied (None values are skipped), validated."""
    data = cfg.model_dump(mode="json")
    changed = False
    for dotted, value in values.items():
        if value is None:
            continue
        section, key = dotted.split(".")
        data[section][key] = str(value) if isinstance(value, Path) else value
        changed = True
    if not changed:
        return cfg
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None


def require_file(path: Path | None, field: str) -> Path:
    """A list/weights file that must exist: one-line error naming the field otherwise."""
    if path is None:
        raise ConfigError(f"{field} is not set (give it in the config or as an option)")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{field}: file not found: {p}")
    return p


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config atomically (saved next to every checkpoint and export)."""
    from tsn_cli.fsutil import atomic_write_text

    atomic_write_text(path, cfg.absolute().to_yaml())


CONFIG_NAME = "config.yaml"


def config_beside(weights: str | Path) -> Path | None:
    """The `config.yaml` saved next to a checkpoint or export, if any."""
    cand = Path(weights).parent / CONFIG_NAME
    return cand if cand.is_file() else None

"""Typed configuration for a whole run: pydantic models, YAML loading and `-o section.key=value` overrides.

Every field maps to one constructor argument somewhere in `tsn_cli` (grep the field name). Unknown keys, wrong
types and missing files are reported as one `ConfigError` line naming the key and what is allowed.
"""

from __future__ import annotations

import re
import reprlib
import string
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tsn_cli.constants import CROP_SCALES, FRAME_TEMPLATE, IMAGENET_MEAN, IMAGENET_STD
from tsn_cli.errors import ConfigError

MAX_SIDE = 4096  # short_side / target_size: a 4096-px frame is already ~50 MB per view in float32
MAX_TEMPLATE_WIDTH = 10  # frame_template width/precision: 10 digits number 10^10 frames


def _positive_std(v: list[float]) -> list[float]:
    if any(s <= 0 for s in v):
        raise ValueError("every std must be > 0 (normalisation divides by it)")
    return v


# Shared by the run config and an export's tsn.yaml, so both accept exactly the same values.
Side = Annotated[int, Field(ge=8, le=MAX_SIDE)]
Mean = Annotated[list[float], Field(min_length=3, max_length=3)]
Std = Annotated[list[float], Field(min_length=3, max_length=3), AfterValidator(_positive_std)]
Crops = Literal[1, 3, 10]
Depth = Literal[18, 34, 50, 101, 152]


class _Section(BaseModel):
    # allow_inf_nan=False: `lr: .nan` or `std: [.inf, ...]` is an error, never a silent NaN run
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(_Section):
    """The network: ResNet backbone + TSN head."""

    depth: Depth = 50
    num_classes: int = Field(400, ge=1)
    seg_num: int = Field(3, ge=1, description="segments per clip (frames the network sees)")
    dropout: float = Field(0.4, ge=0.0, lt=1.0)
    fc_std: float = Field(0.01, gt=0.0)
    pretrained: Optional[str] = Field(
        None,
        description="ImageNet backbone weights: a file, an http(s):// URL or a "
        "known name such as resnet50 (see `tsn weights list`)",
    )


class DataConfig(_Section):
    """Where the videos or frames are and how the list files are written."""

    format: Literal["video", "frames"] = "video"
    train_list: Optional[Path] = None
    val_list: Optional[Path] = None
    test_list: Optional[Path] = None
    data_root: Optional[Path] = Field(None, description="prefix for relative list paths (default: the list's folder)")
    video_suffix: str = Field("", description="appended to every video path (PaddleVideo's extension-less lists)")
    frame_template: str = FRAME_TEMPLATE
    label_names: Optional[Path] = Field(None, description="'<id> <name>' file; class ids are 0-based")

    @field_validator("frame_template")
    @classmethod
    def _template_formats(cls, v: str) -> str:
        return check_frame_template(v)


class AugmentConfig(_Section):
    """Pre-processing: PaddleVideo's Scale -> MultiScaleCrop/CenterCrop -> flip -> normalise."""

    short_side: Side = 256
    target_size: Side = 224
    scales: list[float] = Field(default_factory=lambda: list(CROP_SCALES))
    flip_prob: float = Field(0.5, ge=0.0, le=1.0)
    mean: Mean = Field(default_factory=lambda: list(IMAGENET_MEAN))
    std: Std = Field(default_factory=lambda: list(IMAGENET_STD))

    @model_validator(mode="after")
    def _crop_fits(self, info: ValidationInfo):
        if not is_partial(info):  # a later source (a flag, -o) may still change either side
            crop_fits(self.target_size, self.short_side)
        return self


PARTIAL = {"partial": True}  # validation context of a config that later sources still change: see `load_config`


def is_partial(info: ValidationInfo) -> bool:
    """Whether this validation is of an intermediate config (checks between fields wait for the final one)."""
    return bool((info.context or {}).get("partial"))


def crop_fits(target_size: int, short_side: int) -> None:
    """ValueError when the crop is larger than the scaled frame (configs and tsn.yaml alike)."""
    if target_size > short_side:
        raise ValueError(f"target_size ({target_size}) must not exceed short_side ({short_side})")


def check_frame_template(v: str) -> str:
    """`v` if it formats one frame number with a sane width; ValueError otherwise. The width is checked before
    formatting: 'img_{:>3000000000}.jpg' would allocate gigabytes."""
    try:
        fields = [(name, spec) for _, name, spec, _ in string.Formatter().parse(v) if name is not None]
    except ValueError as exc:
        raise ValueError(f"must format one frame number, e.g. '{FRAME_TEMPLATE}' ({exc})") from None
    for _, spec in fields:
        if "{" in (spec or ""):
            raise ValueError(f"nested {{}} fields are not allowed; e.g. '{FRAME_TEMPLATE}'")
        if any(int(d) > MAX_TEMPLATE_WIDTH for d in re.findall(r"\d+", spec or "")):
            raise ValueError(f"width or precision over {MAX_TEMPLATE_WIDTH}; e.g. '{FRAME_TEMPLATE}'")
    try:
        v.format(1)
    except (IndexError, KeyError, ValueError) as exc:
        raise ValueError(f"must format one frame number, e.g. '{FRAME_TEMPLATE}' ({exc})") from None
    return v


class TrainConfig(_Section):
    """Optimiser and schedule (PaddleVideo's TSN recipe by default)."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=1, description="clips per device per step")
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    lr_boundaries: Optional[list[Union[int, float]]] = Field(
        None,
        description="epochs after which the LR drops x lr_decay; values < 1 are fractions of epochs (default 1/3, 2/3)",
    )
    lr_decay: float = Field(0.1, gt=0.0, le=1.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    grad_clip: Optional[float] = Field(40.0, gt=0.0, description="global-norm clip; null disables")
    accum_steps: int = Field(1, ge=1, description="gradient accumulation steps")
    auto_scale_lr: bool = False
    base_batch_size: int = Field(256, ge=1, description="global batch the lr is meant for (with auto_scale_lr)")
    val_interval: int = Field(1, ge=0, description="validate every N epochs (0: never)")
    save_interval: int = Field(1, ge=1)
    keep_last: Optional[int] = Field(
        None, ge=1, description="keep only the N latest TSN_epoch_* checkpoints (TSN_best stays); null keeps all"
    )
    log_interval: int = Field(10, ge=1)
    # fine-tuning controls (engine.finetune, engine.stopping.patience_reason)
    freeze_stages: int = Field(
        0,
        ge=0,
        le=4,
        description="conv1 and the first N residual stages (res2..res(N+1)) get no updates and keep "
        "their BatchNorm statistics; 0 trains everything",
    )
    partial_bn: bool = Field(
        False,
        description="TSN's partial BN: every BatchNorm but the first is frozen (statistics and affine parameters)",
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="cross-entropy label smoothing epsilon")
    class_balance: Literal["none", "sampler", "loss"] = Field(
        "none",
        description="sampler: draw clips with probability 1/class frequency; loss: inverse-frequency class "
        "weights in the cross-entropy (mean 1)",
    )
    patience: Optional[int] = Field(
        None, ge=1, description="stop when val top-1 has not improved for N validations; null never stops early"
    )

    @field_validator("lr_boundaries")
    @classmethod
    def _boundaries(cls, v: Optional[list[float]]) -> Optional[list[float]]:
        if v is None:
            return v
        out: list[Union[int, float]] = []
        for b in v:
            if 0 < b < 1:
                out.append(float(b))  # a fraction of train.epochs: scales with --epochs
            elif b >= 1 and float(b).is_integer():
                out.append(int(b))
            else:
                raise ValueError(
                    f"{b} is neither an epoch (a whole number >= 1) nor a fraction of train.epochs (0 < f < 1)"
                )
        return out


class EvalConfig(_Section):
    """Test-time views and batching for eval and predict."""

    seg_num: Optional[int] = Field(None, ge=1, description="segments at test time (default: model.seg_num)")
    crops: Crops = 1
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

    @property
    def test_seg_num(self) -> int:
        """Segments per clip at test time (eval, export, predict): eval.seg_num, else model.seg_num."""
        return self.eval.seg_num or self.model.seg_num

    def to_yaml(self) -> str:
        """YAML text that `load_config` reads back to the same config."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def absolute(self) -> "RunConfig":
        """A copy whose file paths are absolute, so a saved config works from any folder."""
        data = self.model_dump()
        for section, keys in (
            ("model", ["pretrained"]),
            ("data", ["train_list", "val_list", "test_list", "data_root", "label_names"]),
            ("runtime", ["output"]),
        ):
            for key in keys:
                value = data[section][key]
                if value is not None and not str(value).lower().startswith(("http://", "https://")):
                    data[section][key] = Path(value).absolute()
                    if key == "pretrained":  # a str field (it may hold a URL or a weights name)
                        data[section][key] = str(data[section][key])
        return RunConfig.model_validate(data)

    def flat(self) -> list[tuple[str, Any]]:
        """(section.key, value) pairs, for the start-of-run table."""
        out = []
        for section, values in self.model_dump(mode="json").items():
            for key, value in values.items():
                out.append((f"{section}.{key}", value))
        return out


# --------------------------------------------------------------------------------------------- loading


def _format_error(exc: ValidationError, source: str, names: dict[str, str] | None = None) -> str:
    """One line for the first validation error; `names` maps keys to the flags that set them, so a bad flag value
    is reported under the flag's name ("--average: must be one of 'logits' or 'scores', got 'mean' (eval.average)")."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{source}: {unknown_key(loc)}"
    msg = err["msg"].removeprefix("Value error, ")  # pydantic's prefix to our own ValueError's message
    if err["type"] == "literal_error" and "ctx" in err:
        msg = f"must be one of {err['ctx'].get('expected')}"
    value = err.get("input")
    more = f" [+{len(exc.errors()) - 1} more]" if len(exc.errors()) > 1 else ""
    if names and loc in names:
        return f"{names[loc]}: {msg}, got {preview(value)} ({loc}){more}"
    shown = "" if isinstance(value, dict) else f" (got {preview(value)})"
    return f"{source}: {loc or 'config'}: {msg}{shown}{more}"


_PREVIEW = reprlib.Repr()
_PREVIEW.maxlevel, _PREVIEW.maxstring, _PREVIEW.maxother = 2, 60, 60
_PREVIEW.maxlist = _PREVIEW.maxtuple = _PREVIEW.maxdict = _PREVIEW.maxset = 4


def preview(value: Any, limit: int = 80) -> str:
    """A short repr of a value for an error line: never more than `limit` characters, whatever its size
    (reprlib stops early, so a huge nested value costs no more than a small one)."""
    text = _PREVIEW.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unknown_key(dotted: str) -> str:
    """'unknown key X (did you mean Y?)'; the allowed keys are listed only when nothing is close."""
    import difflib

    section, _, key = dotted.partition(".")
    if section not in RunConfig.model_fields:
        close = difflib.get_close_matches(section, list(RunConfig.model_fields), n=1)
        hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(RunConfig.model_fields)}"
        return f"unknown section '{section}' ({hint})"
    allowed = _allowed_keys(section)
    # the key in another section (model.epochs), else a near spelling in this section, else anywhere
    by_key = {k.partition(".")[2]: k for s in reversed(list(RunConfig.model_fields)) for k in _allowed_keys(s)}
    here = {k.partition(".")[2]: k for k in allowed}
    close = [by_key[key]] if key in by_key else []
    close = close or [here[k] for k in difflib.get_close_matches(key, list(here), n=1, cutoff=0.7)]
    close = close or [by_key[k] for k in difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.8)]
    hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(allowed)}"
    return f"unknown key '{dotted}' ({hint})"


def _allowed_keys(section: str | None) -> list[str]:
    if section is None or section not in RunConfig.model_fields:
        return list(RunConfig.model_fields)
    sub = RunConfig.model_fields[section].annotation
    return [f"{section}.{k}" for k in sub.model_fields]


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (`*name`): an alias bomb (billion laughs) would expand into gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed: write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


def parse_yaml(text: str, where: str, error: type = ConfigError) -> Any:
    """Parse untrusted YAML text: tags run no code, aliases are refused, deep nesting is an error; any problem is
    one `error` line naming `where` and the line."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{where}{line}: invalid YAML ({str(problem)[:120]})") from None
    except RecursionError:
        raise error(f"{where}: invalid YAML (nested too deeply)") from None


def read_yaml_file(path: Path, what: str, error: type = ConfigError) -> Any:
    """A YAML file's content: a regular file of at most `MAX_CONFIG_BYTES`, UTF-8, parsed by `parse_yaml`."""
    from tsn_cli.fsutil import MAX_CONFIG_BYTES, read_regular_file

    raw = read_regular_file(path, MAX_CONFIG_BYTES, what, error)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: cannot read {what} (not UTF-8 text: byte {exc.start})") from None
    return parse_yaml(text, str(path), error)


def _read_yaml(path: Path) -> dict:
    data = read_yaml_file(path, "config file")
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
        value = parse_yaml(raw, "override") if raw.strip() else None
    except ConfigError:
        value = raw
    return parts, value


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    base: RunConfig | None = None,
    partial: bool = False,
) -> RunConfig:
    """Load a config: defaults <- YAML file <- `-o` overrides, validated as a whole.

    `base` (e.g. the config saved next to a checkpoint) replaces the defaults when given. `partial`: the result is
    an intermediate step that flags still change (`build_config`), so each value is checked but checks between
    values (target_size <= short_side) wait for the final config: `-o augment.short_side=72 --target-size 64` works.
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
            raise ConfigError(f"override -o {item}: {unknown_key(f'{section}.{key}')}")
        sec = data.setdefault(section, {})
        if not isinstance(sec, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping")
        sec[key] = value
        touched.append((f"{section}.{key}", item))
    try:
        return RunConfig.model_validate(data, context=PARTIAL if partial else None)
    except ValidationError as exc:
        loc = ".".join(str(p) for p in exc.errors()[0]["loc"])
        # Name the override that set the failing key (or its section), else the file.
        for dotted, item in reversed(touched):
            if loc == dotted or loc.startswith(dotted + ".") or dotted.startswith(loc + "."):
                source = f"override -o {item}"
                break
        raise ConfigError(_format_error(exc, source)) from None


def with_values(
    cfg: RunConfig,
    values: dict[str, Any],
    source: str | Callable[[str], str] = "option",
    names: dict[str, str] | None = None,
    *,
    partial: bool = False,
    final: bool = False,
) -> RunConfig:
    """Return a copy with `{'section.key': value}` applied (None values are skipped), validated.

    `names` maps keys to the command-line flags that set them: an invalid value is reported under its flag.
    `partial` as in `load_config`; `final` validates even when nothing changes (`cfg` was a partial one). `source`
    names where the values came from, or is called with the failing key to name it."""
    data = cfg.model_dump(mode="json")
    changed = final
    for dotted, value in values.items():
        if value is None:
            continue
        section, key = dotted.split(".")
        data[section][key] = str(value) if isinstance(value, Path) else value
        changed = True
    if not changed:
        return cfg
    try:
        return RunConfig.model_validate(data, context=PARTIAL if partial else None)
    except ValidationError as exc:
        if callable(source):
            source = source(".".join(str(p) for p in exc.errors()[0]["loc"]))
        raise ConfigError(_format_error(exc, source, names)) from None


# key -> (what it is, the flag that sets it): a missing setting is reported with both ways to give it
SETTINGS = {
    "data.train_list": ("training list", "--train-list"),
    "data.val_list": ("validation list", "--val-list"),
    "data.test_list": ("list to evaluate", "--list"),
}
EXAMPLE_CONFIG = "configs/tsn_demo.yaml"


def not_set(field: str) -> str:
    """'no training list: give --train-list or set data.train_list in a --config file (e.g. ...)'."""
    what, flag = SETTINGS.get(field, (field, None))
    give = f"give {flag} or set {field}" if flag else f"set {field}"
    return f"no {what}: {give} in a --config file (e.g. --config {EXAMPLE_CONFIG})"


def config_sets(path: str | Path, dotted: str) -> bool:
    """Whether the YAML config at `path` sets `section.key` itself (rather than leaving it to the defaults)."""
    section, key = dotted.split(".")
    sec = _read_yaml(Path(path)).get(section)
    return isinstance(sec, dict) and key in sec


def require_file(path: Path | None, field: str) -> Path:
    """A list/weights file that must exist: one-line error naming the flag and config key otherwise."""
    if path is None:
        raise ConfigError(not_set(field))
    p = Path(path)
    if not p.is_file():
        from tsn_cli.fsutil import special_kind

        kind = special_kind(p)
        raise ConfigError(f"{field}: {p} is {kind}, not a regular file" if kind else f"{field}: file not found: {p}")
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


def validation_message(exc: ValidationError, source: str) -> str:
    """One line for a ValidationError of any model built from these field types (e.g. an export's tsn.yaml)."""
    return _format_error(exc, source)

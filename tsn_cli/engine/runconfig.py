"""The run config from a config file, the config saved beside the weights, overrides and flags.

Precedence (later wins): built-in defaults <- the `config.yaml` saved beside `weights` (when no `config`)
<- `config` FILE <- `data` (a dataset.yaml, see `tsn_cli.prepare.spec`) <- `-o section.key=value` overrides
<- first-class flags such as `--seg-num` (the table `FLAG_KEYS`).
With `weights`, the checkpoint itself decides `model.depth` and `model.num_classes`: a value none of those sources
sets is read from the checkpoint, and one that disagrees with it is an error naming both.
Used by the CLI commands (`tsn_cli.cli.common`) and the Python API (`tsn_cli.api`); errors name the CLI flags.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from tsn_cli.errors import ConfigError

if TYPE_CHECKING:
    from tsn_cli.config import RunConfig


# The one table from command-line flag to config key: name -> (config key, the option as typed). The names are the
# commands' parameter names (and the Python API's `load_config` keywords); a flag that sets different keys in
# different commands has one name per meaning (`tsn eval --seg-num` is `eval_seg_num`, `tsn train --seg-num` is
# `seg_num`). `build_config(**flags)` applies them, and an invalid value is reported under its option.
FLAG_KEYS: dict[str, tuple[str, str]] = {
    "seg_num": ("model.seg_num", "--seg-num"),
    "depth": ("model.depth", "--depth"),
    "num_classes": ("model.num_classes", "--num-classes"),
    "pretrained": ("model.pretrained", "--pretrained"),
    "target_size": ("augment.target_size", "--target-size"),
    "train_list": ("data.train_list", "--train-list"),
    "val_list": ("data.val_list", "--val-list"),
    "data_root": ("data.data_root", "--data-root"),
    "labels": ("data.label_names", "--labels"),
    "epochs": ("train.epochs", "--epochs"),
    "batch_size": ("train.batch_size", "--batch-size"),
    "lr": ("train.lr", "--lr"),
    "auto_scale_lr": ("train.auto_scale_lr", "--auto-scale-lr"),
    "keep_last": ("train.keep_last", "--keep-last"),
    "freeze_stages": ("train.freeze_stages", "--freeze-stages"),
    "partial_bn": ("train.partial_bn", "--partial-bn"),
    "patience": ("train.patience", "--patience"),
    "eval_seg_num": ("eval.seg_num", "--seg-num"),
    "crops": ("eval.crops", "--crops"),
    "average": ("eval.average", "--average"),
    "eval_batch_size": ("eval.batch_size", "--batch-size"),
    "max_views_per_batch": ("eval.max_views_per_batch", "--max-views-per-batch"),
    "output": ("runtime.output", "--output"),
    "device": ("runtime.device", "--device"),
    "workers": ("runtime.workers", "--workers"),
    "seed": ("runtime.seed", "--seed"),
    "amp": ("runtime.amp", "--amp"),
    "amp_level": ("runtime.amp_level", "--amp-level"),
}


def build_config(
    *,
    config: Optional[Path],
    overrides: Optional[list[str]],
    weights: Optional[Path] = None,
    data: Optional[Path] = None,
    on_message: Optional[Callable[[str], None]] = None,
    **flags,
) -> RunConfig:
    """Resolve the run config from a file, the config saved beside the weights, a dataset, overrides and flags.

    `flags` are named as in :data:`FLAG_KEYS` (None: not given). With `weights` (already resolved, see
    `tsn_cli.model.checkpoint.resolve_weights`), the model's depth and class count must be the checkpoint's: unset
    ones are read from it, conflicting ones raise :class:`ConfigError` naming both sides.
    `on_message` gets the note said when the checkpoint decides them (default: `tsn_cli.ui.info`, on stderr).
    `data` (a dataset folder or its dataset.yaml) sets the lists, format and class names; the class count is always
    its label list's (a flag, override or checkpoint that disagrees is a ConfigError naming both).
    """
    from tsn_cli.config import config_beside, load_config, with_values

    unknown = sorted(set(flags) - set(FLAG_KEYS))
    if unknown:
        raise TypeError(f"build_config: no flag named {', '.join(unknown)} in FLAG_KEYS")
    base = beside = None
    if config is None and weights is not None:
        beside = config_beside(weights)
        if beside is not None:
            base = load_config(beside)
    labels = flags.get("labels")
    if labels is not None and not Path(labels).is_file():
        raise ConfigError(f"--labels: file not found: {labels}")
    dataset = None
    # every step before the last is partial: each value is checked as it comes, the checks between values
    # (target_size <= short_side) run once on the final merge of file, dataset, -o and flags
    if data is None:
        cfg = load_config(config, overrides, base=base, partial=True)
    else:  # the dataset's values go between the config file and -o
        from tsn_cli.prepare.spec import load_spec

        dataset = load_spec(data)
        cfg = load_config(config, base=base, partial=True)
        cfg = with_values(cfg, dataset.config_values(), source=str(dataset.path), partial=True)
        cfg = load_config(None, overrides, base=cfg, partial=True) if overrides else cfg
    values = {FLAG_KEYS[name][0]: value for name, value in flags.items()}
    names = {FLAG_KEYS[name][0]: FLAG_KEYS[name][1] for name in flags}
    target_size = flags.get("target_size")
    pinned = _source("augment.short_side", None, None, overrides, {}) is not None  # -o gives both: check them
    if target_size is not None and target_size > cfg.augment.short_side and not pinned:
        # A bigger crop needs a bigger resize: keep PaddleVideo's 256/224 ratio.
        values["augment.short_side"] = int(round(target_size * 256 / 224))
        names["augment.short_side"] = "--target-size"
    for key, value in values.items():  # a bad flag value is named by its flag
        if value is not None:
            with_values(cfg, {key: value}, source=f"option {names[key]}", names=names, partial=True)
    resolved = with_values(cfg, values, source=partial(_sources, config, overrides, flags), final=True)
    named = {k: (names[k], values[k]) for k in values}
    if dataset is not None:
        _check_dataset_classes(resolved, dataset, overrides, named)
    if weights is not None:
        resolved = _fit_checkpoint(resolved, weights, config, beside, overrides, named, on_message, dataset)
    if labels is not None:
        from tsn_cli.engine.build import check_label_file

        check_label_file(labels, resolved.model.num_classes, "--labels")
    return resolved


def _sources(config, overrides, flags: dict, loc: str) -> str:
    """Who set the section `loc` that fails the final check, in precedence order ("cfg.yaml, -o augment.short_side=72,
    --target-size 300"): each value was valid alone, so the error is between values of one section."""
    section = loc.split(".")[0] + "."
    given = [str(config)] if config is not None else []
    given += [f"-o {item}" for item in overrides or [] if item.strip().startswith(section)]
    given += [
        f"{FLAG_KEYS[n][1]} {v}" for n, v in flags.items() if v is not None and FLAG_KEYS[n][0].startswith(section)
    ]
    return ", ".join(given) or "config"


def _check_dataset_classes(cfg: RunConfig, dataset, overrides, flags: dict) -> None:
    """With `data`, the class count is its label list's: a flag or -o giving another count (for the same class
    names) is an error naming both, never a model whose head and names disagree."""
    if cfg.model.num_classes == dataset.num_classes or Path(cfg.data.label_names or "") != dataset.label_list:
        return
    _, desc = _source("model.num_classes", None, None, overrides, flags) or ("", "model.num_classes")
    drop = desc if desc.startswith("-o ") else desc.split(" ")[0]
    raise ConfigError(
        f"{desc}: the dataset {dataset.path} has {dataset.num_classes} classes (its label list "
        f"{dataset.label_list}); the class count always comes from the label list: drop {drop}"
    )


_ARCH_KEYS = ("model.depth", "model.num_classes")


def _source(
    key: str, config: Optional[Path], beside: Optional[Path], overrides, flags: dict, dataset=None
) -> Optional[tuple[str, str]]:
    """(kind, description) of the highest-precedence source that sets `key`, or None when nothing sets it."""
    from tsn_cli.config import config_sets, parse_override

    flag, value = flags.get(key, (None, None))
    if value is not None:
        return "flag", f"{flag} {value}"
    for item in reversed(overrides or []):
        if ".".join(parse_override(item)[0]) == key:
            return "flag", f"-o {item}"
    if dataset is not None and key == "model.num_classes":
        return "data", f"--data {dataset.path} ({dataset.num_classes} classes in {dataset.label_list.name})"
    if config is not None and config_sets(config, key):
        return "config", f"{config} ({key})"
    if beside is not None:
        return "beside", f"{beside} ({key})"
    return None


def _fit_checkpoint(
    cfg: RunConfig,
    weights: Path,
    config,
    beside,
    overrides,
    flags: dict,
    on_message: Optional[Callable[[str], None]] = None,
    dataset=None,
) -> RunConfig:
    """Take model.depth / model.num_classes from the checkpoint unless set; a set value must agree with it."""
    from tsn_cli.config import with_values
    from tsn_cli.model.arch import conflict_message, read_architecture

    if on_message is None:
        from tsn_cli.ui import info as on_message

    arch = read_architecture(weights)
    have = {"model.depth": arch.depth, "model.num_classes": arch.num_classes}
    taken = {}
    for key in _ARCH_KEYS:
        if have[key] is None:
            continue  # the file does not say: the config's value stands, and loading checks it
        src = _source(key, config, beside, overrides, flags, dataset)
        wanted = getattr(cfg.model, key.split(".")[1])
        if src is None:
            taken[key] = have[key]
        elif wanted != have[key]:
            kind, desc = src
            if kind == "flag":
                opt = desc.split(" ", 1)[0] if not desc.startswith("-o ") else "-o " + key
                fix = f"drop {opt}"
                if key == "model.num_classes":
                    fix += f", or fine-tune a new head: tsn train --weights {weights} --num-classes {wanted}"
            elif kind == "data":
                fix = (
                    f"evaluate it on the dataset it was trained on, or fine-tune it: tsn train --weights {weights} "
                    f"--data {dataset.path.parent}"
                )
            elif kind == "config":
                fix = "give the config this checkpoint was trained with, or fine-tune it with `tsn train --weights`"
            else:
                fix = "that config.yaml belongs to another model: give this checkpoint's config with --config"
            raise ConfigError(conflict_message(key, wanted, desc, arch, weights, fix))
    if taken:
        cfg = with_values(cfg, taken, source=f"checkpoint {weights}")
        if config is None and beside is None:
            on_message(
                f"no config.yaml beside {weights}: ResNet-{cfg.model.depth}, {cfg.model.num_classes} classes "
                f"read from the checkpoint; other settings are defaults ({cfg.model.seg_num} segments, "
                f"{cfg.augment.target_size} px): give the training config with --config"
            )
    return cfg


# What `predict --model` takes from --config/-o: the test views and how to run. Preprocessing and the network are
# fixed by the export (tsn.yaml); training-only keys (data, train, scales, ...) do not affect a prediction.
EXPORT_APPLIES = {
    "eval.crops": "crops",
    "eval.seg_num": "seg_num",
    "eval.max_views_per_batch": "batch_views",
    "runtime.device": "device",
    "runtime.threads": "threads",
}
_EXPORT_FIXED = {
    "model.depth": ("model", "depth"),
    "model.num_classes": ("num_classes",),
    "augment.short_side": ("short_side",),
    "augment.target_size": ("target_size",),
    "augment.mean": ("mean",),
    "augment.std": ("std",),
    "eval.average": ("average",),
}


def export_settings(config: Optional[Path], overrides: Optional[list[str]], meta: dict) -> dict:
    """The `EXPORT_APPLIES` values that `config`/`overrides` set, for predicting with an export described by `meta`
    (its tsn.yaml). A key the export fixes (preprocessing, network, averaging) with another value than the export's
    is a ConfigError naming the key, both values and the fix; `model.seg_num` points to `eval.seg_num`."""
    from tsn_cli.config import RunConfig, load_config, parse_override, read_yaml_file, with_values

    # the export's own settings are the base, so `-o augment.short_side=40` is judged against them, not the defaults
    base = with_values(
        RunConfig(),
        {
            "augment.short_side": meta["short_side"],
            "augment.target_size": meta["target_size"],
            "augment.mean": meta["mean"],
            "augment.std": meta["std"],
            "model.num_classes": meta["num_classes"],
            "model.depth": (meta.get("model") or {}).get("depth"),
            "eval.average": meta.get("average"),
        },
        source="tsn.yaml",
    )
    cfg = load_config(config, overrides, base=base)
    given: dict[str, str] = {}  # key -> where it was set
    if config is not None:
        data = read_yaml_file(Path(config), "config file") or {}
        for section, values in data.items() if isinstance(data, dict) else ():
            for key in values if isinstance(values, dict) else ():
                given[f"{section}.{key}"] = str(config)
    for item in overrides or []:
        given[".".join(parse_override(item)[0])] = f"-o {item}"
    out = {}
    for dotted, where in given.items():
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        if dotted in EXPORT_APPLIES:
            out[EXPORT_APPLIES[dotted]] = value
        elif dotted == "model.seg_num":
            raise ConfigError(
                f"{where}: model.seg_num does not apply to an exported model (--model); set the test "
                "segments with eval.seg_num or --seg-num"
            )
        elif dotted in _EXPORT_FIXED:
            have = meta
            for part in _EXPORT_FIXED[dotted]:
                have = have.get(part) if isinstance(have, dict) else None
            if dotted == "eval.average" and have is None:
                have = "logits"
            same = have == value or (isinstance(value, list) and have is not None and list(have) == list(value))
            if have is not None and not same:
                raise ConfigError(
                    f"{where}: {dotted} {value!r} differs from the export's {have!r} (its tsn.yaml); "
                    "an exported model keeps its settings: re-export with them, or predict with "
                    "--weights"
                )
    return out

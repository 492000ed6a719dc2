"""From a `RunConfig` to objects: the model, transforms, datasets and loaders (plain constructor calls)."""

from __future__ import annotations

from pathlib import Path

from tsn_cli.config import RunConfig, require_file


def build_model(cfg: RunConfig):
    """The TSN network of `cfg.model` (random init; load weights separately)."""
    from tsn_cli.model.tsn import TSN

    m = cfg.model
    return TSN(depth=m.depth, num_classes=m.num_classes, dropout=m.dropout, fc_std=m.fc_std)


def train_transform(cfg: RunConfig):
    """Scale -> MultiScaleCrop -> RandomFlip -> Normalize, from `cfg.augment`."""
    from tsn_cli.data.transforms import TrainTransform

    a = cfg.augment
    return TrainTransform(
        short_side=a.short_side,
        target_size=a.target_size,
        scales=tuple(a.scales),
        mean=tuple(a.mean),
        std=tuple(a.std),
        flip_prob=a.flip_prob,
    )


def test_transform(cfg: RunConfig, crops: int | None = None):
    """Scale -> CenterCrop/ThreeCrop/TenCrop -> Normalize, from `cfg.augment` and `cfg.eval`."""
    from tsn_cli.data.transforms import TestTransform

    a = cfg.augment
    return TestTransform(
        short_side=a.short_side,
        target_size=a.target_size,
        crops=crops or cfg.eval.crops,
        mean=tuple(a.mean),
        std=tuple(a.std),
    )


def read_records(cfg: RunConfig, list_file: Path | None, field: str, strict_labels: bool = False):
    """Records of a list file (bad lines are returned, not raised; with `strict_labels` a label outside the
    model's classes raises `DataError`)."""
    from tsn_cli.data.lists import read_list

    path = require_file(list_file, field)
    return read_list(
        path,
        fmt=cfg.data.format,
        data_root=cfg.data.data_root,
        video_suffix=cfg.data.video_suffix,
        num_classes=cfg.model.num_classes,
        strict_labels=strict_labels,
    )


def train_dataset(cfg: RunConfig, records):
    """Random segment sampling + training augmentation."""
    from tsn_cli.data.dataset import TSNDataset

    return TSNDataset(
        records,
        fmt=cfg.data.format,
        seg_num=cfg.model.seg_num,
        transform=train_transform(cfg),
        train=True,
        seed=cfg.runtime.seed,
        frame_template=cfg.data.frame_template,
    )


def eval_dataset(cfg: RunConfig, records, seg_num: int | None = None, crops: int | None = None):
    """Segment centres + centre/three/ten crops; bad videos are flagged, never replaced."""
    from tsn_cli.data.dataset import TSNDataset

    crops = crops or cfg.eval.crops
    return TSNDataset(
        records,
        fmt=cfg.data.format,
        seg_num=seg_num or cfg.test_seg_num,
        transform=test_transform(cfg, crops),
        train=False,
        seed=cfg.runtime.seed,
        frame_template=cfg.data.frame_template,
        views=crops,
    )


def label_names(cfg: RunConfig) -> list[str]:
    """Class names from `data.label_names`, else '0', '1', ..."""
    from tsn_cli.data.lists import read_label_names

    n = cfg.model.num_classes
    if cfg.data.label_names is not None and Path(cfg.data.label_names).is_file():
        names = read_label_names(cfg.data.label_names)
        if len(names) >= n:
            return list(names[:n])
        return list(names) + [str(i) for i in range(len(names), n)]
    return [str(i) for i in range(n)]


def check_label_file(path: Path, num_classes: int, field: str = "data.label_names") -> list[str]:
    """The names in a label file that must name exactly `num_classes` classes (ConfigError otherwise)."""
    from tsn_cli.data.lists import read_label_names
    from tsn_cli.errors import ConfigError

    names = read_label_names(path)
    if len(names) != num_classes:
        raise ConfigError(
            f"{field}: {path} has {len(names)} class names but the model has {num_classes} classes; "
            "give the label file of this checkpoint"
        )
    return list(names)


def class_names_warning(cfg: RunConfig) -> str | None:
    """One line when the class names are not what the model's classes need (unset, missing file, another count)."""
    from tsn_cli.data.lists import read_label_names

    n, path = cfg.model.num_classes, cfg.data.label_names
    ids = f"classes are shown as their ids 0..{n - 1}"
    if path is None:
        return f"no class names (data.label_names is not set): {ids}"
    if not Path(path).is_file():
        return f"data.label_names: file not found: {path}; {ids}"
    k = len(read_label_names(path))
    if k == n:
        return None
    what = f"names {n}..{k - 1} are not used" if k > n else f"classes {k}..{n - 1} are shown as their ids"
    return f"data.label_names {path} has {k} names, the model has {n} classes: {what} (check --num-classes or the file)"

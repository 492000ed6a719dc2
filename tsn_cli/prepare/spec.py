"""`dataset.yaml`: what a `tsn prepare` command wrote, so `tsn train|eval --data DIR` needs nothing else.

Written beside the lists by every `tsn prepare` command (`ucf101`, `k400`, `folder`, `csv`; the demo through
`prepare ucf101`). Paths in it are relative to its own folder, so the dataset folder can move::

    version: 1
    source: folder                 # the prepare command that wrote it
    format: frames                 # videos | frames: which lists train_list/val_list/test_list are
    train_list: train_rawframes.txt
    val_list: val_rawframes.txt
    test_list: null
    label_list: label_list.txt     # "0 name" per class
    num_classes: 5                 # a check only: the class count always comes from the label list
    frame_template: img_{:05}.jpg

Reading it (:func:`load_spec`) checks every named file exists and that `num_classes` agrees with the label list:
the model's class count and class names always come from the label list, never from a number typed twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tsn_cli.constants import FRAME_TEMPLATE
from tsn_cli.errors import ConfigError

SPEC_NAME = "dataset.yaml"
LIST_KEYS = ("train_list", "val_list", "test_list")


class DatasetSpec(BaseModel):
    """The fields of a dataset.yaml (paths as written: relative to its folder, or absolute)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    source: str = Field("", description="the tsn prepare command that wrote it")
    format: Literal["videos", "frames"]
    train_list: Optional[str] = None
    val_list: Optional[str] = None
    test_list: Optional[str] = None
    label_list: str
    num_classes: int = Field(ge=1)
    frame_template: str = FRAME_TEMPLATE


@dataclass
class Dataset:
    """A dataset.yaml read and checked: absolute paths, and the class names read from its label list."""

    path: Path
    spec: DatasetSpec
    lists: dict[str, Optional[Path]]
    label_list: Path
    names: list[str]

    @property
    def num_classes(self) -> int:
        """The class count: the number of names in the label list."""
        return len(self.names)

    def config_values(self) -> dict[str, Any]:
        """`{'section.key': value}` for the run config (see `tsn_cli.config.with_values`).

        Lists are written relative to their own folder with their extensions, so `data_root` is that folder
        and `video_suffix` is empty whatever a --config file says (a PaddleVideo config's `.avi` would break them).
        """
        values: dict[str, Any] = {f"data.{k}": v for k, v in self.lists.items()}
        values.update(
            {
                "data.format": "frames" if self.spec.format == "frames" else "video",
                "data.label_names": self.label_list,
                "data.frame_template": self.spec.frame_template,
                "data.data_root": self.path.parent,
                "data.video_suffix": "",
                "model.num_classes": self.num_classes,
            }
        )
        return values


def spec_path(data: str | os.PathLike) -> Path:
    """The dataset.yaml that `--data DATA` means: DATA itself (a file), or DATA/dataset.yaml (a folder)."""
    p = Path(data)
    if p.is_dir():
        cand = p / SPEC_NAME
        if not cand.is_file():
            raise ConfigError(
                f"--data {p}: no {SPEC_NAME} in this folder; write one with `tsn prepare folder {p}` "
                "(or prepare ucf101/k400/csv)"
            )
        return cand
    if not p.is_file():
        raise ConfigError(f"--data {p}: no such folder or file (give a dataset folder or its {SPEC_NAME})")
    return p


def load_spec(data: str | os.PathLike) -> Dataset:
    """Read and check the dataset.yaml `--data DATA` names; ConfigError (one line naming the file and key) if
    it is unreadable, has unknown or missing keys, names a file that does not exist, or a class count that is
    not its label list's."""
    from tsn_cli.config import read_yaml_file
    from tsn_cli.data.lists import read_label_names
    from tsn_cli.errors import DataError

    path = spec_path(data)
    raw = read_yaml_file(path, "dataset.yaml")  # a regular file within a cap, no YAML aliases; ConfigError
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: not a dataset description (expected keys format, train_list, label_list, ...)")
    try:
        spec = DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"]) or "dataset"
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"{path}: {key}: {what} (allowed: {', '.join(DatasetSpec.model_fields)})") from None
    base = path.parent
    redo = f"re-run the tsn prepare command that wrote {path}"

    def resolve(key: str, value: str) -> Path:
        p = Path(value) if os.path.isabs(value) else base / value
        if not p.is_file():
            raise ConfigError(f"{path}: {key}: file not found: {p} ({redo})")
        return p

    lists = {k: (resolve(k, v) if (v := getattr(spec, k)) else None) for k in LIST_KEYS}
    if not any(lists.values()):
        raise ConfigError(f"{path}: names no list (train_list, val_list or test_list)")
    labels = resolve("label_list", spec.label_list)
    try:
        names = read_label_names(labels)
    except DataError as exc:
        raise ConfigError(f"{path}: label_list: {exc}") from None
    if len(names) != spec.num_classes:
        raise ConfigError(
            f"{path}: num_classes is {spec.num_classes} but its label list {labels} has {len(names)} classes ({redo})"
        )
    return Dataset(path=path, spec=spec, lists=lists, label_list=labels, names=names)


def write_spec(
    out_dir: str | os.PathLike,
    *,
    source: str,
    frames: bool,
    lists: dict[str, Optional[str | os.PathLike]],
    label_list: str | os.PathLike,
    num_classes: int,
    name: str = SPEC_NAME,
) -> Path:
    """Write `out_dir/name` atomically, paths relative to `out_dir`; returns its path.

    `lists` maps train/val/test (missing keys: none) to the list files of the format `frames` selects."""
    import yaml

    from tsn_cli.fsutil import atomic_write_text

    out = Path(out_dir)

    def rel(p: Optional[str | os.PathLike]) -> Optional[str]:
        return None if p is None else Path(os.path.relpath(os.path.abspath(p), os.path.abspath(out))).as_posix()

    spec = DatasetSpec(
        source=source,
        format="frames" if frames else "videos",
        train_list=rel(lists.get("train")),
        val_list=rel(lists.get("val")),
        test_list=rel(lists.get("test")),
        label_list=rel(label_list),
        num_classes=num_classes,
        frame_template=FRAME_TEMPLATE,
    )
    text = (
        f"# written by `tsn prepare {source}`; paths are relative to this file's folder.\n"
        "# use it with: tsn train --data FOLDER  (num_classes is checked against the label list)\n"
    )
    text += yaml.safe_dump(spec.model_dump(), sort_keys=False)
    target = out / name
    atomic_write_text(target, text)
    return target

"""Which test list and class names a training run records when its lists are not the config file's.

A config file names one dataset: train, val and test lists and a class-name file. When `--train-list` /
`--val-list` (or `-o data.train_list=...`) replace its lists, the config's test list and class names belong
to the config's dataset, not to the given lists, and `config.yaml` saved beside the checkpoints would send
`tsn eval` to the wrong list. So, unless set explicitly with `-o`:

* a given `--val-list` becomes the run's test list too, when the config's test list was its val list or lies
  in another folder (a separate test list beside the given lists is kept);
* the label list `tsn prepare` writes beside its lists (`ucf101_label_list.txt`, `Kinetics-400_label_list.txt`,
  `label_list.txt`) names the classes when lists are given or when `data.label_names` is unset or missing.

What is left doubtful (no names, a missing file, a count that is not the model's) is one warning line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from tsn_cli.config import RunConfig, with_values

LISTS = ("train_list", "val_list")


def label_list_beside(*lists: Optional[Path]) -> Optional[Path]:
    """The label list `tsn prepare` wrote beside the first of `lists` that has one, else None."""
    from tsn_cli.prepare.k400 import LABEL_FILE as K400_LABELS
    from tsn_cli.prepare.labelled import LABEL_FILE as OWN_LABELS
    from tsn_cli.prepare.ucf101 import LABEL_FILE as UCF_LABELS

    for lst in lists:
        if lst is None:
            continue
        for name in (UCF_LABELS, K400_LABELS, OWN_LABELS):
            cand = Path(lst).parent / name
            if cand.is_file():
                return cand
    return None


def _same(a: Optional[Path], b: Optional[Path]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return os.path.abspath(a) == os.path.abspath(b)


def _folder(p: Path) -> str:
    return os.path.dirname(os.path.abspath(p))


def follow_given_lists(
    cfg: RunConfig, file_cfg: RunConfig, pinned: set[str]
) -> tuple[RunConfig, list[tuple[str, str]]]:
    """`cfg` with its test list and class names made to fit lists that differ from `file_cfg`'s (the config file
    alone), and the notes to show: ("info" | "warning", one line). Keys in `pinned` (given with -o) are kept."""
    from tsn_cli.engine.build import class_names_warning

    d, f = cfg.data, file_cfg.data
    given = [k for k in LISTS if getattr(d, k) is not None and not _same(getattr(d, k), getattr(f, k))]
    updates: dict = {}
    notes: list[tuple[str, str]] = []
    if (
        "val_list" in given
        and "data.test_list" not in pinned
        and d.test_list is not None
        and not _same(d.test_list, d.val_list)
    ):
        if _same(d.test_list, f.val_list) or _folder(d.test_list) != _folder(d.val_list):
            updates["data.test_list"] = d.val_list
            notes.append(
                (
                    "info",
                    f"data.test_list: {d.val_list}, the run's val list (what `tsn eval` scores by "
                    f"default); the config file's {d.test_list} goes with its own lists",
                )
            )
    if "data.label_names" not in pinned:
        names = d.label_names
        beside = label_list_beside(*(getattr(d, k) for k in (given or LISTS)))
        missing = names is None or not Path(names).is_file()
        if beside is not None and (missing or (given and not _same(beside, names))):
            updates["data.label_names"] = beside
            notes.append(("info", f"class names from {beside} (beside the {'given ' if given else ''}lists)"))
    cfg = with_values(cfg, updates)
    warning = class_names_warning(cfg)
    if warning:
        notes.append(("warning", warning))
    return cfg, notes

"""The TSN architecture in plain Python (numpy only; no paddle): what the model is built from, and what a
checkpoint was saved from.

* :func:`block_plan` -- the ordered residual blocks of a ResNet of a supported depth (:data:`DEPTHS`), with
  PaddleVideo's block names; ``resnet.py`` builds its layers from it and ``flops.py`` counts them.
  :func:`check_depth` and :func:`feature_channels` (512 for ResNet-18/34, 2048 for 50/101/152) go with it.
* :func:`infer_architecture` -- the architecture read off a state dict's tensor names and shapes. A TSN state
  dict says everything the model needs: the residual blocks present (``backbone.res2a``, ``backbone.res4b22``,
  ...) give the depth, a ``conv2`` inside the blocks marks bottleneck blocks (ResNet-50/101/152; basic blocks of
  ResNet-18/34 have only ``conv0``/``conv1``), and ``head.fc.weight`` [C_feat, num_classes] gives the class
  count. So a lone ``TSN_k400.pdparams`` can be used without any config, and a config that disagrees with the
  checkpoint is caught before a model is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from tsn_cli.errors import ConfigError

DEPTHS = (18, 34, 50, 101, 152)

# blocks per stage, and whether the block is a bottleneck (expansion 4) or basic (expansion 1)
_STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
_WIDTHS = (64, 128, 256, 512)

_BLOCK = re.compile(r"^res([2-5])([a-z]|b\d+)\.")
_PREFIXES = ("model.", "module.", "backbone.")


@dataclass(frozen=True)
class BlockSpec:
    """One residual block: its state-dict name, channels, stride and whether it has a projection shortcut."""

    name: str
    in_channels: int
    width: int  # channels of the inner convs
    out_channels: int
    stride: int
    bottleneck: bool
    projection: bool


def check_depth(depth: int) -> int:
    """Return `depth` if supported, else raise ConfigError naming the allowed values."""
    if depth not in _STAGE_BLOCKS:
        raise ConfigError(f"model.depth: unsupported ResNet depth {depth!r} (allowed: 18, 34, 50, 101, 152)")
    return int(depth)


def feature_channels(depth: int) -> int:
    """Channels of the backbone output: 512 for ResNet-18/34, 2048 for 50/101/152."""
    return 2048 if check_depth(depth) >= 50 else 512


def block_plan(depth: int) -> list[BlockSpec]:
    """The ordered list of residual blocks of a ResNet of `depth` (pure Python; used by the model and FLOPs)."""
    check_depth(depth)
    bottleneck = depth >= 50
    expansion = 4 if bottleneck else 1
    plan: list[BlockSpec] = []
    in_ch = 64
    for stage, (n_blocks, width) in enumerate(zip(_STAGE_BLOCKS[depth], _WIDTHS, strict=False)):
        for i in range(n_blocks):
            if depth in (101, 152) and stage == 2 and i > 0:
                name = f"res{stage + 2}b{i}"  # res4b1, res4b2, ... (PaddleVideo naming for deep nets)
            else:
                name = f"res{stage + 2}{chr(ord('a') + i)}"
            plan.append(
                BlockSpec(
                    name=name,
                    in_channels=in_ch,
                    width=width,
                    out_channels=width * expansion,
                    stride=2 if (i == 0 and stage > 0) else 1,
                    bottleneck=bottleneck,
                    projection=(i == 0),
                )
            )
            in_ch = width * expansion
    return plan


@dataclass(frozen=True)
class Architecture:
    """What a checkpoint's tensors say about the model. Fields are None when the file does not tell."""

    depth: Optional[int] = None
    num_classes: Optional[int] = None
    bottleneck: Optional[bool] = None
    blocks: tuple = ()  # residual blocks per stage, e.g. (3, 4, 6, 3)
    fc_shape: Optional[tuple] = None  # head.fc.weight [C_feat, num_classes]

    def describe(self) -> str:
        """'ResNet-50, 400 classes' (the parts that are known)."""
        parts = []
        if self.depth is not None:
            parts.append(f"ResNet-{self.depth}")
        elif self.blocks:
            kind = "bottleneck" if self.bottleneck else "basic"
            parts.append(f"an unknown ResNet ({kind} blocks {list(self.blocks)} per stage)")
        if self.num_classes is not None:
            parts.append(f"{self.num_classes} classes")
        return ", ".join(parts) or "no TSN tensors"


def _bare(key: str) -> str:
    for prefix in _PREFIXES:  # wrappers some tools add, then the TSN's own backbone prefix
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def _plans() -> dict[tuple, int]:
    """{(bottleneck, sorted block names): depth} for every supported depth (names as the model registers them)."""
    return {(d >= 50, tuple(sorted(b.name for b in block_plan(d)))): d for d in DEPTHS}


def infer_architecture(state: dict[str, np.ndarray]) -> Architecture:
    """Depth, block type and class count of a TSN state dict (``{key: array}``, with or without prefixes).

    The depth is the one whose exact set of block names (as :func:`block_plan` names them,
    which is PaddleVideo's naming) and block type the file has; None when no supported depth matches.
    """
    names: set[str] = set()
    bottleneck = False
    fc = bias = None
    for key, value in state.items():
        if key.startswith(("head.fc.", "model.head.fc.", "module.head.fc.")):
            if key.endswith("fc.weight"):
                fc = tuple(int(s) for s in np.shape(value))
            elif key.endswith("fc.bias"):
                bias = tuple(int(s) for s in np.shape(value))
            continue
        bare = _bare(key)
        m = _BLOCK.match(bare)
        if m:
            block = bare.split(".", 1)[0]
            names.add(block)
            bottleneck = bottleneck or bare.startswith(f"{block}.conv2.")
    blocks = tuple(sum(1 for n in names if n[3] == str(stage)) for stage in range(2, 6)) if names else ()
    depth = _plans().get((bottleneck, tuple(sorted(names)))) if names else None
    num_classes = None
    if fc is not None and len(fc) == 2:
        num_classes = fc[1]
    elif bias is not None and len(bias) == 1:
        num_classes = bias[0]
    return Architecture(
        depth=depth, num_classes=num_classes, bottleneck=bottleneck if names else None, blocks=blocks, fc_shape=fc
    )


def read_architecture(path: str | Path) -> Architecture:
    """:func:`infer_architecture` of a weights file (read safely with :func:`tsn_cli.model.checkpoint.load_state`)."""
    from tsn_cli.model.checkpoint import load_state

    return infer_architecture(load_state(path))


def conflict_message(key: str, wanted: int, source: str, arch: Architecture, path: str | Path, fix: str) -> str:
    """One line: `source` sets `key` (model.depth / model.num_classes) to `wanted`, the checkpoint says otherwise.

    Names the tensor that shows it with both shapes, e.g. "--num-classes 10 does not match W.pdparams:
    head.fc.weight is [512, 6] in the checkpoint, [512, 10] in the model (the checkpoint has 6 classes, the model
    10); <fix>".
    """
    if key == "model.num_classes":
        feat = arch.fc_shape[0] if arch.fc_shape else "?"
        model_fc = [feat, wanted] if arch.depth is None else [feature_channels(arch.depth), wanted]
        have = list(arch.fc_shape) if arch.fc_shape else f"[{feat}, {arch.num_classes}]"
        what = (
            f"head.fc.weight is {have} in the checkpoint, {model_fc} in the model "
            f"(the checkpoint has {arch.num_classes} classes, the model {wanted})"
        )
    else:
        kind = "bottleneck" if arch.bottleneck else "basic"
        what = (
            f"the checkpoint is a ResNet-{arch.depth} ({kind} blocks {list(arch.blocks)} per stage), "
            f"the model a ResNet-{wanted}"
        )
    return f"{source} does not match {path}: {what}; {fix}"


def state_shapes(depth: int, num_classes: Optional[int] = None) -> dict[str, tuple]:
    """``{key: shape}`` of a TSN's state dict in PaddleVideo's layout (pure Python; same order as the model).

    ``num_classes=None`` gives the backbone alone (what an ImageNet file must hold). Used to check a downloaded
    file against the architecture it is named for without building a model.
    """
    shapes: dict[str, tuple] = {}

    def conv_bn(name: str, cin: int, cout: int, k: int) -> None:
        shapes[f"backbone.{name}._conv.weight"] = (cout, cin, k, k)
        for part in ("weight", "bias", "_mean", "_variance"):
            shapes[f"backbone.{name}._batch_norm.{part}"] = (cout,)

    conv_bn("conv", 3, 64, 7)
    for b in block_plan(depth):
        if b.bottleneck:
            conv_bn(f"{b.name}.conv0", b.in_channels, b.width, 1)
            conv_bn(f"{b.name}.conv1", b.width, b.width, 3)
            conv_bn(f"{b.name}.conv2", b.width, b.out_channels, 1)
        else:
            conv_bn(f"{b.name}.conv0", b.in_channels, b.width, 3)
            conv_bn(f"{b.name}.conv1", b.width, b.width, 3)
        if b.projection:
            conv_bn(f"{b.name}.short", b.in_channels, b.out_channels, 1)
    if num_classes is not None:
        shapes["head.fc.weight"] = (feature_channels(depth), int(num_classes))
        shapes["head.fc.bias"] = (int(num_classes),)
    return shapes

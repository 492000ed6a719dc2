"""ResNet backbones (depth 18/34/50/101/152) with PaddleVideo's layer names, so its weight files load unchanged.

Structure (ResNet v1.5: the stride sits on the 3x3 conv, no ResNet-D tweaks):

* stem ``conv``: 7x7/2 ConvBN + ReLU, then a 3x3/2 max pool (``pool2D_max``, no weights);
* four stages of blocks registered as ``res{stage}{letter}`` — ``res2a, res2b, ...``; for depth 101/152 the
  third stage is named ``res4a, res4b1, res4b2, ...`` (PaddleVideo/PaddleClas naming);
* every ConvBN is ``<name>._conv`` (Conv2D without bias) + ``<name>._batch_norm`` (BatchNorm2D: ``weight``,
  ``bias``, ``_mean``, ``_variance``);
* Bottleneck (50/101/152): ``conv0`` 1x1, ``conv1`` 3x3 (stride), ``conv2`` 1x1 to 4x width, projection
  ``short`` on the first block of every stage. BasicBlock (18/34): ``conv0`` 3x3 (stride), ``conv1`` 3x3,
  projection ``short`` on the first block of every stage (also stage 2, as in PaddleClas' ResNet18/34, so its
  ImageNet weights load). PaddleVideo's own 18/34 crash (wrong kwarg and wrong stage widths); these work.

Paddle is imported lazily: the layer classes are created on first access of ``ResNet`` (module
``__getattr__``), so importing this module (e.g. for :func:`block_plan` in the FLOPs report) stays cheap.
"""

from __future__ import annotations

from tsn_cli.model.lazy import lazy_getattr

from dataclasses import dataclass

DEPTHS = (18, 34, 50, 101, 152)

# blocks per stage, and whether the block is a bottleneck (expansion 4) or basic (expansion 1)
_STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
_WIDTHS = (64, 128, 256, 512)


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
    from tsn_cli.errors import ConfigError

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
    for stage, (n_blocks, width) in enumerate(zip(_STAGE_BLOCKS[depth], _WIDTHS)):
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


def _build_classes() -> dict:
    """Define the paddle Layer classes (needs paddle; called once, on first use)."""
    from tsn_cli.engine.device import import_paddle

    paddle = import_paddle()
    nn = paddle.nn
    F = paddle.nn.functional

    def _kaiming():
        # PaddleVideo re-initialises every Conv2D with KaimingNormal() defaults (fan_in, ReLU gain).
        return paddle.ParamAttr(initializer=nn.initializer.KaimingNormal())

    class ConvBN(nn.Layer):
        """Conv2D (no bias, 'same' padding for odd kernels) -> BatchNorm2D -> optional ReLU."""

        def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                     relu: bool = True):
            super().__init__()
            self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                                   padding=(kernel_size - 1) // 2, weight_attr=_kaiming(), bias_attr=False)
            # Paddle defaults (momentum 0.9, eps 1e-5) are PaddleVideo's; weight 1 / bias 0 is the brief's init.
            self._batch_norm = nn.BatchNorm2D(
                out_channels,
                weight_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(1.0)),
                bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)),
            )
            self._relu = relu

        def forward(self, x):
            y = self._batch_norm(self._conv(x))
            return F.relu(y) if self._relu else y

    class Bottleneck(nn.Layer):
        """1x1 -> 3x3 (stride) -> 1x1 (x4) with identity or projection shortcut."""

        def __init__(self, spec: BlockSpec):
            super().__init__()
            self.conv0 = ConvBN(spec.in_channels, spec.width, 1)
            self.conv1 = ConvBN(spec.width, spec.width, 3, stride=spec.stride)
            self.conv2 = ConvBN(spec.width, spec.out_channels, 1, relu=False)
            self.short = (ConvBN(spec.in_channels, spec.out_channels, 1, stride=spec.stride, relu=False)
                          if spec.projection else None)

        def forward(self, x):
            y = self.conv2(self.conv1(self.conv0(x)))
            s = self.short(x) if self.short is not None else x
            return F.relu(s + y)

    class BasicBlock(nn.Layer):
        """3x3 (stride) -> 3x3 with identity or projection shortcut."""

        def __init__(self, spec: BlockSpec):
            super().__init__()
            self.conv0 = ConvBN(spec.in_channels, spec.width, 3, stride=spec.stride)
            self.conv1 = ConvBN(spec.width, spec.out_channels, 3, relu=False)
            self.short = (ConvBN(spec.in_channels, spec.out_channels, 1, stride=spec.stride, relu=False)
                          if spec.projection else None)

        def forward(self, x):
            y = self.conv1(self.conv0(x))
            s = self.short(x) if self.short is not None else x
            return F.relu(s + y)

    class ResNet(nn.Layer):
        """ResNet backbone: [B, 3, H, W] -> [B, out_channels, H/32, W/32]. State-dict keys as PaddleVideo's."""

        def __init__(self, depth: int = 50):
            super().__init__()
            self.depth = check_depth(depth)
            self.out_channels = feature_channels(depth)
            self.conv = ConvBN(3, 64, 7, stride=2)
            self.pool2D_max = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
            self.blocks = []
            block_cls = Bottleneck if depth >= 50 else BasicBlock
            for spec in block_plan(depth):
                # add_sublayer with the PaddleVideo name gives keys like `res2a.conv0._conv.weight`
                self.blocks.append(self.add_sublayer(spec.name, block_cls(spec)))

        def forward(self, x):
            y = self.pool2D_max(self.conv(x))
            for block in self.blocks:
                y = block(y)
            return y

    return {"ConvBN": ConvBN, "Bottleneck": Bottleneck, "BasicBlock": BasicBlock, "ResNet": ResNet}


__getattr__ = lazy_getattr(globals(), ("ConvBN", "Bottleneck", "BasicBlock", "ResNet"), _build_classes)

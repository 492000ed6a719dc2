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

The block list, depth check and channel counts are plain Python in ``arch.py`` (the FLOPs report and checkpoint
inspection use them without paddle); this module imports paddle.
"""

from __future__ import annotations

from tsn_cli.model.arch import BlockSpec, block_plan, check_depth, feature_channels
from tsn_cli.runtime import import_paddle

# not a bare `import paddle`: that would fix the CPU math threads at one before the tool sets them
paddle = import_paddle()
nn = paddle.nn
F = paddle.nn.functional


def _kaiming():
    # PaddleVideo re-initialises every Conv2D with KaimingNormal() defaults (fan_in, ReLU gain).
    return paddle.ParamAttr(initializer=nn.initializer.KaimingNormal())


class ConvBNLayer(nn.Layer):
    """Conv2D (no bias, 'same' padding for odd kernels) -> BatchNorm2D -> optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, relu: bool = True):
        super().__init__()
        self._conv = nn.Conv2D(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            weight_attr=_kaiming(),
            bias_attr=False,
        )
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


class BottleneckBlock(nn.Layer):
    """1x1 -> 3x3 (stride) -> 1x1 (x4) with identity or projection shortcut."""

    def __init__(self, spec: BlockSpec):
        super().__init__()
        self.conv0 = ConvBNLayer(spec.in_channels, spec.width, 1)
        self.conv1 = ConvBNLayer(spec.width, spec.width, 3, stride=spec.stride)
        self.conv2 = ConvBNLayer(spec.width, spec.out_channels, 1, relu=False)
        self.short = (
            ConvBNLayer(spec.in_channels, spec.out_channels, 1, stride=spec.stride, relu=False)
            if spec.projection
            else None
        )

    def forward(self, x):
        y = self.conv2(self.conv1(self.conv0(x)))
        s = self.short(x) if self.short is not None else x
        return F.relu(s + y)


class BasicBlock(nn.Layer):
    """3x3 (stride) -> 3x3 with identity or projection shortcut."""

    def __init__(self, spec: BlockSpec):
        super().__init__()
        self.conv0 = ConvBNLayer(spec.in_channels, spec.width, 3, stride=spec.stride)
        self.conv1 = ConvBNLayer(spec.width, spec.out_channels, 3, relu=False)
        self.short = (
            ConvBNLayer(spec.in_channels, spec.out_channels, 1, stride=spec.stride, relu=False)
            if spec.projection
            else None
        )

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
        self.conv = ConvBNLayer(3, 64, 7, stride=2)
        self.pool2D_max = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.blocks = []
        block_cls = BottleneckBlock if depth >= 50 else BasicBlock
        for spec in block_plan(depth):
            # add_sublayer with the PaddleVideo name gives keys like `res2a.conv0._conv.weight`
            self.blocks.append(self.add_sublayer(spec.name, block_cls(spec)))

    def forward(self, x):
        y = self.pool2D_max(self.conv(x))
        for block in self.blocks:
            y = block(y)
        return y

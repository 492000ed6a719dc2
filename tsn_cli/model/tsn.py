"""TSN: a ResNet applied to every frame, global average pool, average consensus over frames, dropout, FC.

Same computation and state-dict keys as PaddleVideo's ``Recognizer2D`` + ``ResNet`` + ``TSNHead``:
``backbone.*`` and ``head.fc.weight`` [C_feat, num_classes] / ``head.fc.bias``. The consensus averages the
pooled features over *all* T inputs of a sample — segments and, at test time, crops/views — before the FC;
since the FC is linear this equals the mean of the per-view logits.

This module imports paddle (through ``import_paddle``, which sets the CPU thread count first).
"""

from __future__ import annotations

from tsn_cli.errors import ConfigError
from tsn_cli.model.resnet import ResNet
from tsn_cli.runtime import import_paddle

paddle = import_paddle()
nn = paddle.nn


class TSNHead(nn.Layer):
    """Dropout + FC on consensus features. Only `fc` has weights (Normal(0, fc_std), bias 0)."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.4, fc_std: float = 0.01):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.drop_ratio = float(dropout)
        # Paddle's Dropout default mode "upscale_in_train" == PaddleVideo's; identity in eval mode.
        self.dropout = nn.Dropout(p=self.drop_ratio) if self.drop_ratio > 0 else None
        self.fc = nn.Linear(
            in_channels,
            num_classes,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.Normal(mean=0.0, std=float(fc_std))),
            bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)),
        )

    def forward(self, feat):
        """feat [N, C] (already averaged) -> logits [N, num_classes]."""
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.fc(feat)


class TSN(nn.Layer):
    """Temporal Segment Network with a ResNet backbone; input [N, T, 3, H, W] float32, any T, H, W."""

    def __init__(self, depth: int = 50, num_classes: int = 400, dropout: float = 0.4, fc_std: float = 0.01):
        super().__init__()
        if int(num_classes) < 1:
            raise ConfigError(f"model.num_classes: must be >= 1, got {num_classes!r}")
        self.depth = int(depth)
        self.num_classes = int(num_classes)
        self.backbone = ResNet(depth)
        self.head = TSNHead(self.backbone.out_channels, self.num_classes, dropout, fc_std)
        self.pool = nn.AdaptiveAvgPool2D((1, 1))

    def frame_features(self, x):
        """[N, T, 3, H, W] -> globally pooled per-frame features [N, T, C_feat] (no consensus)."""
        t = x.shape[1]
        y = self.pool(self.backbone(paddle.reshape(x, [-1] + list(x.shape[2:]))))
        # -1 for N keeps a dynamic batch working under paddle.jit.to_static
        return paddle.reshape(y, [-1, t, y.shape[1]])

    def classify(self, feat):
        """[N, C_feat] consensus features -> logits [N, num_classes] (dropout, then FC)."""
        return self.head(feat)

    def forward(self, x):
        """[N, T, 3, H, W] -> logits [N, num_classes]: mean over the T frame features, dropout, FC."""
        return self.classify(paddle.mean(self.frame_features(x), axis=1))

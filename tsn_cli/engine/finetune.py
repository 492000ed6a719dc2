"""Fine-tuning controls of a training run (``train.*`` keys; `Trainer` holds one `FineTune`):

* ``freeze_stages N``: conv1 (``backbone.conv``) and the residual stages res2 .. res(N+1) get no updates -- their
  parameters are ``stop_gradient`` (no gradient: the optimizer skips them, L2 decay included) and their BatchNorm
  layers stay in eval mode, so the running statistics do not move either (MMAction2's ``frozen_stages``, whose 0
  freezes conv1 alone; 0 here trains everything);
* ``partial_bn``: the TSN paper's partial BN, as MMAction2 and the authors' tsn-pytorch do it -- every BatchNorm
  but the first (conv1's) is in eval mode with its weight and bias frozen; the first one trains fully;
* ``label_smoothing`` and ``class_balance: loss``: the cross-entropy's epsilon and inverse-frequency class weights
  (normalised to mean 1 over the classes present in the training list);
* ``class_balance: sampler``: per-clip sampling weights 1/frequency of its class (`EpochBatchSampler` draws an
  epoch with replacement from them).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from tsn_cli.config import RunConfig


def class_counts(labels, num_classes: int) -> np.ndarray:
    """Clips per class (int64, length `num_classes`)."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]


def loss_weights(labels, num_classes: int) -> np.ndarray:
    """Inverse-frequency class weights with mean 1 over the classes present; an absent class (never a target)
    gets 1."""
    counts = class_counts(labels, num_classes).astype(np.float64)
    present = counts > 0
    w = np.ones(num_classes, dtype=np.float64)
    w[present] = 1.0 / counts[present]
    w[present] /= w[present].mean()
    return w.astype(np.float32)


def sample_weights(labels, num_classes: int) -> np.ndarray:
    """Per-clip sampling weights 1/(clips of its class): every class is drawn equally often on average."""
    labels = np.asarray(labels, dtype=np.int64)
    return 1.0 / class_counts(labels, num_classes)[labels].astype(np.float64)


def frozen_layer_names(freeze_stages: int) -> list[str]:
    """Backbone sublayer names frozen by `freeze_stages`: [] for 0, else conv1 ('conv') and stages res2..res(N+1)."""
    if freeze_stages <= 0:
        return []
    return ["conv", *(f"res{s}" for s in range(2, freeze_stages + 2))]


class FineTune:
    """The fine-tuning controls of `cfg` applied to `model` (parameters are frozen when it is built)."""

    def __init__(
        self,
        cfg: RunConfig,
        model,
        labels,
        on_message: Callable[[str], None] = lambda msg: None,
        validating: bool = True,
    ):
        from tsn_cli.runtime import import_paddle

        self.paddle = import_paddle()
        self.cfg = cfg.train
        names = set(frozen_layer_names(self.cfg.freeze_stages))
        # backbone children: 'conv' (conv1), 'pool2D_max', then the blocks 'res2a', 'res2b', ..., 'res5c'
        self.frozen_layers = [layer for name, layer in model.backbone.named_children() if name[:4] in names]
        self.later_bns = self._batch_norms(model)[1:] if self.cfg.partial_bn else []
        for layer in self.frozen_layers:
            for p in layer.parameters():
                p.stop_gradient = True
        for bn in self.later_bns:
            bn.weight.stop_gradient = bn.bias.stop_gradient = True
        n = cfg.model.num_classes
        self.weight: Optional[object] = None
        if self.cfg.class_balance == "loss":
            self.weight = self.paddle.to_tensor(loss_weights(labels, n))
        self.sample_weights = sample_weights(labels, n) if self.cfg.class_balance == "sampler" else None
        note = self._note(model)
        if note:
            on_message(note)
        if self.cfg.patience and not validating:
            on_message(
                f"warning: --patience {self.cfg.patience} has no effect without validation "
                "(set data.val_list / --val-list and train.val_interval > 0)"
            )

    @staticmethod
    def _batch_norms(model) -> list:
        import paddle.nn as nn

        # sublayers() walks in registration order: backbone.conv's BN (conv1) comes first
        return [m for m in model.sublayers() if isinstance(m, nn.layer.norm._BatchNormBase)]

    def _note(self, model) -> Optional[str]:
        """One line saying what is frozen (None when nothing is)."""
        if not self.frozen_layers and not self.later_bns:
            return None
        stats = {id(t) for bn in self._batch_norms(model) for t in (bn._mean, bn._variance)}
        total = sum(int(np.prod(p.shape)) for p in model.parameters() if id(p) not in stats)
        trainable = sum(int(np.prod(p.shape)) for p in self.trainable(model))
        parts = []
        if self.frozen_layers:
            stages = ["conv1", *frozen_layer_names(self.cfg.freeze_stages)[1:]]
            parts.append(f"frozen: {', '.join(stages)}")
        if self.later_bns:
            parts.append(f"partial BN: {len(self.later_bns)} of {len(self.later_bns) + 1} BatchNorm layers frozen")
        return f"fine-tuning: {'; '.join(parts)} ({trainable:,} of {total:,} parameters train)"

    def trainable(self, model) -> list:
        """The parameters that get updates (BN running statistics are non-trainable parameters in Paddle)."""
        return [p for p in model.parameters() if not p.stop_gradient]

    def set_modes(self) -> None:
        """Put the frozen BatchNorm layers back in eval mode (call after every `model.train()`)."""
        import paddle.nn as nn

        for layer in self.frozen_layers:
            for m in [layer, *layer.sublayers()]:
                if isinstance(m, nn.layer.norm._BatchNormBase):
                    m.eval()
        for bn in self.later_bns:
            bn.eval()

    def loss(self, logits, labels):
        """Mean cross-entropy of `logits` [N, C] and `labels` [N, 1] with the configured smoothing and weights."""
        return smoothed_cross_entropy(logits, labels, self.cfg.label_smoothing, self.weight)


def smoothed_cross_entropy(logits, labels, epsilon: float = 0.0, weight=None):
    """Cross-entropy against targets ``(1 - epsilon) * one_hot + epsilon / C``; with `weight` [C] each clip's loss
    counts ``weight[label]`` times and the mean divides by the sum of those weights (as a weighted NLL does).

    Written out because Paddle 3.3's ``F.cross_entropy`` fails on [N, 1] labels with ``label_smoothing`` and weighs
    smoothed targets per class rather than per clip. Without smoothing and weights it is ``F.cross_entropy`` itself.
    """
    import paddle
    import paddle.nn.functional as F

    if not epsilon and weight is None:
        return F.cross_entropy(logits, labels)
    y = labels.reshape([-1])
    n_classes = logits.shape[-1]
    target = F.one_hot(y, n_classes) * (1.0 - epsilon) + epsilon / n_classes
    per_clip = -(target * F.log_softmax(logits, axis=-1)).sum(axis=-1)
    if weight is None:
        return per_clip.mean()
    w = paddle.gather(weight, y)
    return (per_clip * w).sum() / w.sum()

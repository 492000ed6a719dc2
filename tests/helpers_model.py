"""Deterministic weights and inputs for the model/parity tests (pure numpy, no paddle).

The golden logits in tests/golden/ were produced by running PaddleVideo's own Recognizer2D (ResNet + TSNHead,
commit ed245e9c, Paddle 3.3.1 CPU, outside this repository) on exactly these weights and inputs; see
tests/golden/README.md. Changing anything here invalidates the goldens.
"""

from __future__ import annotations

import zlib

import numpy as np


def golden_weights(shapes: dict[str, tuple], seed: int = 0) -> dict[str, np.ndarray]:
    """float32 weights for every key, each drawn from its own RandomState(seed ^ crc32(key)).

    Scales keep activations O(1) through any depth: conv ~ N(0, 1/fan_in), BN scale U(0.2, 0.6), shift and
    running mean U(-0.1, 0.1), running variance U(0.5, 1.5) (positive), FC ~ N(0, 0.05), FC bias U(-0.1, 0.1).
    """
    out: dict[str, np.ndarray] = {}
    for key in sorted(shapes):
        shape = tuple(int(s) for s in shapes[key])
        rng = np.random.RandomState((seed ^ zlib.crc32(key.encode("utf-8"))) & 0x7FFFFFFF)
        if key.endswith("_conv.weight"):
            fan_in = int(np.prod(shape[1:]))
            arr = rng.standard_normal(shape) / np.sqrt(fan_in)
        elif key.endswith("_batch_norm.weight"):
            arr = rng.uniform(0.2, 0.6, shape)
        elif key.endswith("_batch_norm._variance"):
            arr = rng.uniform(0.5, 1.5, shape)
        elif key.endswith("_batch_norm.bias") or key.endswith("_batch_norm._mean"):
            arr = rng.uniform(-0.1, 0.1, shape)
        elif key.endswith("fc.weight"):
            arr = rng.standard_normal(shape) * 0.05
        elif key.endswith("fc.bias"):
            arr = rng.uniform(-0.1, 0.1, shape)
        else:
            raise KeyError(f"no generator rule for {key}")
        out[key] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def golden_input(shape: tuple, seed: int = 1) -> np.ndarray:
    """A float32 input clip [N, T, 3, H, W] ~ N(0, 1) (what normalised frames look like)."""
    return np.random.RandomState(seed).standard_normal(tuple(shape)).astype(np.float32)


# The configurations the goldens cover (name -> depth, num_classes, input shape, mode).
# "eval": model.eval(), logits. "train": model.train() with dropout 0 (BN uses batch statistics), logits and the
# running mean of the stem BN after that one forward (checks momentum 0.9 semantics).
GOLDEN_CASES = {
    "r50_eval": dict(depth=50, num_classes=10, shape=(2, 3, 3, 64, 64), mode="eval", seed=0),
    "r50_train": dict(depth=50, num_classes=10, shape=(2, 2, 3, 64, 64), mode="train", seed=3),
    "r101_eval": dict(depth=101, num_classes=7, shape=(1, 4, 3, 32, 32), mode="eval", seed=5),
}


def skeleton_state(depth: int, num_classes: int) -> dict[str, np.ndarray]:
    """Tensor names of a TSN of `depth` with PaddleVideo's layout and a real-shaped head, tiny arrays elsewhere:
    enough for architecture inference from a file (not loadable into a model)."""
    from tsn_cli.model.arch import block_plan, feature_channels

    state = {"backbone.conv._conv.weight": np.zeros(1, np.float32)}
    convs = ("conv0", "conv1", "conv2") if depth >= 50 else ("conv0", "conv1")
    for block in block_plan(depth):
        for conv in convs + (("short",) if block.projection else ()):
            state[f"backbone.{block.name}.{conv}._conv.weight"] = np.zeros(1, np.float32)
    state["head.fc.weight"] = np.zeros((feature_channels(depth), num_classes), np.float32)
    state["head.fc.bias"] = np.zeros(num_classes, np.float32)
    return state

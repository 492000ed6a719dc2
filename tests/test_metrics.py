"""Metrics on hand-made logits/labels with answers worked out by hand (and cross-checked with paddle.metric)."""

from __future__ import annotations

import numpy as np
import pytest

from tsn_cli.engine import metrics as M

# 6 samples, 4 classes; label ranks worked out by hand: ranks (1-based) of the true class per row
SCORES = np.array(
    [
        [0.9, 0.05, 0.03, 0.02],  # label 0 -> rank 1
        [0.1, 0.6, 0.2, 0.1],     # label 2 -> rank 2
        [0.5, 0.1, 0.3, 0.4],     # label 1 -> rank 4
        [0.2, 0.3, 0.4, 0.1],     # label 2 -> rank 1
        [0.3, 0.25, 0.2, 0.25],   # label 0 -> rank 1
        [0.1, 0.2, 0.3, 0.4],     # label 0 -> rank 4
    ]
)
LABELS = np.array([0, 2, 1, 2, 0, 0])


def test_topk_by_hand():
    assert M.topk_accuracy(SCORES, LABELS, 1) == pytest.approx(3 / 6)
    assert M.topk_accuracy(SCORES, LABELS, 2) == pytest.approx(4 / 6)
    assert M.topk_accuracy(SCORES, LABELS, 3) == pytest.approx(4 / 6)
    assert M.topk_accuracy(SCORES, LABELS, 4) == 1.0
    assert M.topk_correct(SCORES, LABELS, 1).tolist() == [True, False, False, True, True, False]


def test_top5_with_fewer_than_5_classes_is_clipped():
    # 4 classes: every label is within the top 5 -> 1.0 (and no IndexError from k > C)
    assert M.topk_accuracy(SCORES, LABELS, 5) == 1.0
    two = np.array([[0.2, 0.8], [0.9, 0.1]])
    assert M.topk_accuracy(two, np.array([0, 0]), 5) == 1.0
    assert M.topk_accuracy(two, np.array([0, 0]), 1) == 0.5


def test_topk_agrees_with_paddle_metric():
    from tsn_cli.runtime import import_paddle

    paddle = import_paddle()
    rng = np.random.default_rng(0)
    s = rng.normal(size=(50, 10)).astype(np.float32)
    y = rng.integers(0, 10, 50)
    for k in (1, 5):
        ref = paddle.metric.accuracy(paddle.to_tensor(s), paddle.to_tensor(y.reshape(-1, 1)), k=k).item()
        assert M.topk_accuracy(s, y, k) == pytest.approx(ref, abs=1e-6)


def test_confusion_per_class_and_mean_class_accuracy_with_empty_class():
    preds = SCORES.argmax(1)  # [0, 1, 0, 2, 0, 3]
    cm = M.confusion_matrix(LABELS, preds, 5)  # class 3 is predicted but never true; class 4 never appears
    expected = np.zeros((5, 5), int)
    for t, p in [(0, 0), (2, 1), (1, 0), (2, 2), (0, 0), (0, 3)]:
        expected[t, p] += 1
    np.testing.assert_array_equal(cm, expected)
    acc = M.per_class_accuracy(cm)
    np.testing.assert_allclose(acc[:3], [2 / 3, 0.0, 1 / 2])
    assert np.isnan(acc[3]) and np.isnan(acc[4])  # no samples: undefined, not 0
    # mean over the classes that have samples only
    assert M.mean_class_accuracy(cm) == pytest.approx((2 / 3 + 0 + 1 / 2) / 3)


def test_mean_class_accuracy_differs_from_top1_when_unbalanced():
    labels = np.array([0, 0, 0, 0, 1])
    preds = np.array([0, 0, 0, 0, 0])
    cm = M.confusion_matrix(labels, preds, 2)
    assert M.topk_accuracy(np.eye(2)[preds], labels, 1) == pytest.approx(0.8)
    assert M.mean_class_accuracy(cm) == pytest.approx(0.5)


def test_empty_inputs():
    s = np.zeros((0, 3), np.float32)
    y = np.zeros(0, np.int64)
    assert M.topk_accuracy(s, y, 1) == 0.0
    cm = M.confusion_matrix(y, y, 3)
    assert cm.shape == (3, 3) and cm.sum() == 0
    assert M.mean_class_accuracy(cm) == 0.0


def test_softmax_stable_and_normalised():
    p = M.softmax(np.array([[1000.0, 1000.0, -1000.0], [0.0, np.log(3.0), 0.0]]), axis=1)
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0], [0.2, 0.6, 0.2]], atol=1e-6)

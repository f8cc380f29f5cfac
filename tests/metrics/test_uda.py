"""Domain-adaptation metrics against hand computations and a NumPy / sklearn reference."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, recall_score

from lightning_sparse.metrics import (
    DomainAdaptationMetrics,
    h_score,
    mean_class_accuracy,
    open_set_scores,
    shared_class_accuracy,
)
from lightning_sparse.metrics.uda import _confusion

# 3 known classes (0, 1, 2) + unknown (3), 10 samples.
TARGET = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 3, 3])
PREDS = torch.tensor([0, 0, 1, 1, 3, 2, 2, 3, 3, 0])
# recalls: class 0: 2/3, class 1: 1/2, class 2: 2/2, unknown: 2/3
OS_STAR = 13 / 18  # (2/3 + 1/2 + 1) / 3
UNK = 2 / 3
H = 2 * OS_STAR * UNK / (OS_STAR + UNK)  # = 468/675 = 0.69333
OS = 17 / 24  # (2/3 + 1/2 + 1 + 2/3) / 4
ACC = 7 / 10


def as_floats(scores):
    return {k: float(v) for k, v in scores.items()}


# --------------------------------------------------------------------------- hand computations
def test_open_set_scores_match_a_hand_computation():
    scores = as_floats(open_set_scores(PREDS, TARGET, num_known=3))
    assert set(scores) == {"os_star", "unk", "h_score", "os", "acc"}
    assert scores["os_star"] == pytest.approx(OS_STAR)
    assert scores["unk"] == pytest.approx(UNK)
    assert scores["h_score"] == pytest.approx(H) == pytest.approx(468 / 675)
    assert scores["os"] == pytest.approx(OS)
    assert scores["acc"] == pytest.approx(ACC)


def test_mean_class_accuracy_matches_a_hand_computation():
    # over all 4 classes present it is OS
    assert float(mean_class_accuracy(PREDS, TARGET, num_classes=4)) == pytest.approx(OS)
    assert float(mean_class_accuracy(PREDS, TARGET, 4, classes=[0, 1, 2])) == pytest.approx(OS_STAR)
    # class 2 absent from target: skipped, whether listed or not
    target, preds = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])
    assert float(mean_class_accuracy(preds, target, 3)) == pytest.approx(0.75)  # (1/2 + 1) / 2
    assert float(mean_class_accuracy(preds, target, 3, classes=[1, 2])) == pytest.approx(1.0)
    assert float(mean_class_accuracy(preds, target, 3, classes=torch.tensor([0]))) == pytest.approx(0.5)
    assert math.isnan(float(mean_class_accuracy(preds, target, 3, classes=[2])))


def test_shared_class_accuracy_matches_a_hand_computation():
    # samples of classes 1 and 2: indices 3..6, predictions right at 3, 5, 6 -> 3/4
    assert float(shared_class_accuracy(PREDS, TARGET, shared_classes=[1, 2])) == pytest.approx(0.75)
    assert float(shared_class_accuracy(PREDS, TARGET, torch.tensor([0]))) == pytest.approx(2 / 3)
    assert math.isnan(float(shared_class_accuracy(PREDS, TARGET, [7])))


def test_h_score_on_floats_and_tensors():
    assert float(h_score(0.8, 0.5)) == pytest.approx(0.8 / 1.3)
    assert float(h_score(0.0, 0.0)) == 0.0
    assert float(h_score(1.0, 0.0)) == 0.0
    out = h_score(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.0, 0.5, 0.25]))
    torch.testing.assert_close(out, torch.tensor([0.0, 0.5, 0.4]))
    assert math.isnan(float(h_score(float("nan"), 0.0)))


def test_confusion_is_rows_true_columns_predicted():
    confmat = _confusion(torch.tensor([1, 1, 0]), torch.tensor([0, 1, 1]), 2)
    assert confmat.tolist() == [[0, 1], [1, 1]]
    assert confmat.dtype == torch.int64


# --------------------------------------------------------------------------- reference
def reference_scores(preds, target, num_known):
    labels = list(range(num_known + 1))
    cm = confusion_matrix(target, preds, labels=labels)
    present = cm.sum(1) > 0
    recall = recall_score(target, preds, labels=labels, average=None, zero_division=0)
    known = np.flatnonzero(present[:num_known])
    os_star = recall[known].mean() if len(known) else math.nan
    unk = recall[num_known] if present[num_known] else math.nan
    h = math.nan if math.isnan(unk) or math.isnan(os_star) else (
        0.0 if os_star + unk == 0 else 2 * os_star * unk / (os_star + unk))
    return {"os_star": os_star, "unk": unk, "h_score": h, "os": recall[present].mean(),
            "acc": float((preds == target).mean())}


@pytest.mark.parametrize("seed", range(6))
def test_open_set_scores_and_mean_class_accuracy_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    num_known = int(rng.integers(1, 6))
    n = int(rng.integers(5, 60))
    target = rng.integers(0, num_known + 1 - (seed == 0), size=n)  # seed 0: no unknown samples
    preds = np.where(rng.random(n) < 0.6, target, rng.integers(0, num_known + 1, size=n))
    got = as_floats(open_set_scores(torch.from_numpy(preds), torch.from_numpy(target), num_known))
    expected = reference_scores(preds, target, num_known)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, nan_ok=True), key
    labels = np.unique(target)
    mca = mean_class_accuracy(torch.from_numpy(preds), torch.from_numpy(target), num_known + 1)
    ref = recall_score(target, preds, labels=labels, average=None, zero_division=0).mean()
    assert float(mca) == pytest.approx(ref, rel=1e-6)


# --------------------------------------------------------------------------- module form
def test_metric_over_batches_equals_the_functional_form():
    metric = DomainAdaptationMetrics(num_known=3)
    for batch in (slice(0, 4), slice(4, 7), slice(7, 10)):
        metric.update(PREDS[batch], TARGET[batch])
    got = as_floats(metric.compute())
    expected = as_floats(open_set_scores(PREDS, TARGET, 3))
    assert set(got) == set(expected) | {"mean_class_accuracy"}
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    assert got["mean_class_accuracy"] == pytest.approx(OS_STAR)
    assert metric.confmat.shape == (4, 4) and metric.confmat.dtype == torch.int64


@pytest.mark.parametrize("columns", [3, 4])
def test_metric_takes_logits(columns):
    preds = torch.tensor([0, 1, 2, 0, 1, 2]) if columns == 3 else PREDS[:6]
    target = TARGET[:6]
    logits = torch.nn.functional.one_hot(preds, columns).float() * 5 + 0.1 * torch.randn(len(preds), columns)
    metric = DomainAdaptationMetrics(num_known=3)
    metric.update(logits.softmax(-1), target)
    got, expected = as_floats(metric.compute()), as_floats(open_set_scores(preds, target, 3))
    assert got["os_star"] == pytest.approx(expected["os_star"])
    assert got["acc"] == pytest.approx(expected["acc"])


def test_metric_reset():
    metric = DomainAdaptationMetrics(num_known=3)
    metric.update(PREDS, TARGET)
    metric.reset()
    assert int(metric.confmat.sum()) == 0
    metric.update(TARGET, TARGET)
    assert as_floats(metric.compute()) == {"os_star": 1.0, "unk": 1.0, "h_score": 1.0, "os": 1.0, "acc": 1.0,
                                           "mean_class_accuracy": 1.0}


# --------------------------------------------------------------------------- edge cases
def test_no_unknown_samples_give_nan_unk_and_h():
    preds, target = torch.tensor([0, 1, 3]), torch.tensor([0, 1, 1])
    scores = as_floats(open_set_scores(preds, target, num_known=3))
    assert math.isnan(scores["unk"]) and math.isnan(scores["h_score"])
    assert scores["os_star"] == pytest.approx(0.75) and scores["os"] == pytest.approx(0.75)


def test_no_known_samples_give_nan_os_star():
    scores = as_floats(open_set_scores(torch.tensor([3, 0]), torch.tensor([3, 3]), num_known=3))
    assert math.isnan(scores["os_star"]) and math.isnan(scores["h_score"])
    assert scores["unk"] == pytest.approx(0.5) and scores["os"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: open_set_scores(PREDS, TARGET, 0), r"`num_known` must be a positive integer, got 0\."),
        (lambda: open_set_scores(PREDS, TARGET, 2.0), "`num_known`"),
        (lambda: open_set_scores(TARGET.clamp(max=2), TARGET, 2), r"`target` must hold labels in \[0, 2\]"),
        (lambda: open_set_scores(PREDS[:3], TARGET, 3), "`preds` and `target` must have the same shape"),
        (lambda: open_set_scores(PREDS.float(), TARGET, 3), "`preds` must be a 1-D integer tensor"),
        (lambda: mean_class_accuracy(PREDS, TARGET, -1), "`num_classes` must be a positive integer"),
        (lambda: mean_class_accuracy(PREDS, TARGET, 4, classes=[4]), r"`classes` must hold labels in \[0, 3\]"),
        (lambda: mean_class_accuracy(PREDS, TARGET, 4, classes=[]), "`classes` must be a non-empty list"),
        (lambda: shared_class_accuracy(PREDS, -TARGET, [1]), "`target` must hold labels non-negative"),
        (lambda: shared_class_accuracy(PREDS, TARGET, [-1]), "`shared_classes` must hold labels"),
        (lambda: DomainAdaptationMetrics(num_known=True), "`num_known` must be a positive integer"),
        (lambda: DomainAdaptationMetrics(3).update(torch.zeros(2, 6), TARGET[:2]), "`preds` scores must have 3 or 4"),
        (lambda: DomainAdaptationMetrics(3).update(PREDS + 1, TARGET), r"`preds` must hold labels in \[0, 3\]"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()

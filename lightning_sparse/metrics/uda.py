"""Domain-adaptation metrics: closed-set, partial, open-set and universal domain adaptation.

Labels and predictions share one coding: ``0..num_known-1`` are the source ("known") classes and
``num_known`` is "unknown", the label of every target-private sample and the prediction of a model
that rejects a sample. Everything is read off one confusion matrix (rows: true, columns: predicted):

- closed-set DA: :func:`mean_class_accuracy` (the "per-class mean accuracy" of VisDA);
- partial DA: :func:`shared_class_accuracy`, the micro accuracy over the shared classes;
- open-set and universal DA (:func:`open_set_scores`): ``os_star`` (OS*, mean recall over the
  known classes present), ``unk`` (UNK, the recall of the unknown class), ``os`` (OS, the same
  mean with the unknown class as one more class), as in OSBP (Saito et al. 2018, "Open Set Domain
  Adaptation by Backpropagation", arXiv:1804.10427), and the H-score ``2 OS* UNK / (OS* + UNK)``
  of Fu et al. 2020 ("Learning to Detect Open Classes for Universal Domain Adaptation",
  arXiv:2007.11402).

Deviation: the LIWUDA official code (JinjingZhu/LIWUDA, ``mmd.predict``) averages the per-class
recalls of the several target-private classes and divides by a hard-coded count; here all
target-private samples are pooled into one unknown class, which is the common definition.

Classes absent from the target are skipped in every mean. With no unknown sample, ``unk`` and
``h_score`` are NaN and ``os`` equals ``os_star``; with no known sample, ``os_star`` is NaN.
:class:`DomainAdaptationMetrics` (torchmetrics) accumulates the confusion matrix over batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchmetrics
from torch import Tensor

__all__ = ["DomainAdaptationMetrics", "h_score", "mean_class_accuracy", "open_set_scores", "shared_class_accuracy"]


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


def _check_labels(preds: Tensor, target: Tensor, num_classes: int | None) -> None:
    for name, t in (("preds", preds), ("target", target)):
        if not isinstance(t, Tensor) or t.dim() != 1 or t.is_floating_point() or t.is_complex():
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"`{name}` must be a 1-D integer tensor of labels, got {shape}.")
    if preds.shape != target.shape:
        raise ValueError(f"`preds` and `target` must have the same shape, got {tuple(preds.shape)} "
                         f"and {tuple(target.shape)}.")
    for name, t in (("preds", preds), ("target", target)):
        if t.numel() and (t.min() < 0 or (num_classes is not None and t.max() >= num_classes)):
            allowed = "non-negative" if num_classes is None else f"in [0, {num_classes - 1}]"
            raise ValueError(f"`{name}` must hold labels {allowed}, got values in "
                             f"[{int(t.min())}, {int(t.max())}].")


def _check_classes(classes: Sequence[int] | Tensor, name: str, num_classes: int | None) -> Tensor:
    values = torch.as_tensor(classes).flatten()
    if values.numel() == 0 or values.is_floating_point() or values.dtype == torch.bool:
        raise ValueError(f"`{name}` must be a non-empty list of integer labels, got {classes!r}.")
    if values.min() < 0 or (num_classes is not None and values.max() >= num_classes):
        allowed = "non-negative" if num_classes is None else f"in [0, {num_classes - 1}]"
        raise ValueError(f"`{name}` must hold labels {allowed}, got {values.tolist()}.")
    return values.long()


def _confusion(preds: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``(C, C)`` int64 confusion matrix, rows true labels, columns predictions."""
    index = target.long() * num_classes + preds.long().to(target.device)
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _recalls(confmat: Tensor) -> tuple[Tensor, Tensor]:
    """Per-class recall (float64, NaN for absent classes) and the mask of classes present."""
    support = confmat.sum(1)
    present = support > 0
    recall = confmat.diagonal().double() / support.clamp(min=1).double()
    return torch.where(present, recall, torch.nan), present


def _nanmean(values: Tensor) -> Tensor:  # NaN for an empty selection
    return values.mean() if values.numel() else values.new_tensor(torch.nan)


def _scores_from_confusion(confmat: Tensor, num_known: int) -> dict[str, Tensor]:
    """OS*, UNK, H, OS and micro accuracy from a ``(num_known+1, num_known+1)`` confusion matrix."""
    recall, present = _recalls(confmat)
    os_star = _nanmean(recall[:num_known][present[:num_known]])
    unk = recall[num_known]
    total = confmat.sum()
    acc = confmat.diagonal().sum().double() / total if total > 0 else recall.new_tensor(torch.nan)
    scores = {"os_star": os_star, "unk": unk, "h_score": h_score(os_star, unk),
              "os": _nanmean(recall[present]), "acc": acc}
    return {key: value.float() for key, value in scores.items()}


def mean_class_accuracy(preds: Tensor, target: Tensor, num_classes: int,
                        classes: Sequence[int] | Tensor | None = None) -> Tensor:
    """Mean per-class recall (VisDA's "per-class mean accuracy").

    Args:
        preds: ``(N,)`` predicted labels in ``[0, num_classes)``.
        target: ``(N,)`` true labels in ``[0, num_classes)``.
        num_classes: Number of classes.
        classes: Classes to average over; default the classes present in ``target``. A listed
            class absent from ``target`` is skipped.

    Returns:
        Float scalar; NaN when no class to average over is present.

    Raises:
        ValueError: If an argument has the wrong type, shape or range.

    Examples:
        >>> preds, target = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 2])
        >>> round(float(mean_class_accuracy(preds, target, num_classes=3)), 4)  # (1/2 + 1 + 1) / 3
        0.8333
        >>> round(float(mean_class_accuracy(preds, target, 3, classes=[0, 1])), 4)
        0.75
    """
    num_classes = _check_count(num_classes, "num_classes")
    _check_labels(preds, target, num_classes)
    recall, present = _recalls(_confusion(preds, target, num_classes))
    if classes is not None:
        selected = torch.zeros_like(present)
        selected[_check_classes(classes, "classes", num_classes).to(present.device)] = True
        present = present & selected
    return _nanmean(recall[present]).float()


def shared_class_accuracy(preds: Tensor, target: Tensor, shared_classes: Sequence[int] | Tensor) -> Tensor:
    """Micro accuracy over the samples whose true class is shared (partial DA).

    Args:
        preds: ``(N,)`` predicted labels (non-negative).
        target: ``(N,)`` true labels (non-negative).
        shared_classes: The classes shared by source and target.

    Returns:
        Float scalar; NaN when no sample belongs to a shared class.

    Raises:
        ValueError: If an argument has the wrong type, shape or range.

    Examples:
        >>> preds, target = torch.tensor([0, 1, 2, 2, 4]), torch.tensor([0, 1, 1, 2, 3])
        >>> round(float(shared_class_accuracy(preds, target, shared_classes=[1, 2])), 4)  # 2 of 3
        0.6667
    """
    _check_labels(preds, target, None)
    shared = _check_classes(shared_classes, "shared_classes", None).to(target.device)
    mask = torch.isin(target.long(), shared)
    if not mask.any():
        return torch.tensor(torch.nan)
    return (preds[mask] == target[mask]).double().mean().float()


def h_score(known_accuracy: float | Tensor, unknown_accuracy: float | Tensor) -> Tensor:
    """H-score: the harmonic mean ``2 k u / (k + u)`` of known and unknown accuracy, 0 where both are 0.

    Fu et al. 2020, "Learning to Detect Open Classes for Universal Domain Adaptation",
    arXiv:2007.11402. NaN inputs give NaN.

    Args:
        known_accuracy: Accuracy on the known classes (OS*), a float or tensor.
        unknown_accuracy: Accuracy on the unknown class (UNK), broadcastable to ``known_accuracy``.

    Returns:
        Float tensor of the broadcast shape.

    Examples:
        >>> round(float(h_score(0.8, 0.5)), 4)
        0.6154
        >>> h_score(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]))
        tensor([0., 1.])
    """
    k, u = torch.as_tensor(known_accuracy), torch.as_tensor(unknown_accuracy)
    dtype = torch.promote_types(torch.promote_types(k.dtype, u.dtype), torch.float32)
    k, u = k.to(dtype), u.to(dtype)
    denom = k + u  # NaN stays NaN: only an exact 0 is special-cased
    return torch.where(denom == 0, torch.zeros_like(denom), 2 * k * u / torch.where(denom == 0, 1, denom))


def open_set_scores(preds: Tensor, target: Tensor, num_known: int) -> dict[str, Tensor]:
    """OS*, UNK, H-score, OS and accuracy of open-set / universal DA (definitions: module docstring).

    Args:
        preds: ``(N,)`` predicted labels in ``[0, num_known]``, ``num_known`` meaning "unknown".
        target: ``(N,)`` true labels in ``[0, num_known]``, ``num_known`` for target-private samples.
        num_known: Number of known (source) classes.

    Returns:
        Dict of float scalars ``os_star``, ``unk``, ``h_score``, ``os``, ``acc``. ``unk`` and
        ``h_score`` are NaN without unknown samples, ``os_star`` NaN without known samples.

    Raises:
        ValueError: If an argument has the wrong type, shape or range.

    Examples:
        >>> preds = torch.tensor([0, 0, 1, 2, 3, 3, 1])
        >>> target = torch.tensor([0, 0, 1, 3, 3, 3, 1])
        >>> {k: round(float(v), 4) for k, v in open_set_scores(preds, target, num_known=3).items()}
        {'os_star': 1.0, 'unk': 0.6667, 'h_score': 0.8, 'os': 0.8889, 'acc': 0.8571}
    """
    num_known = _check_count(num_known, "num_known")
    _check_labels(preds, target, num_known + 1)
    return _scores_from_confusion(_confusion(preds, target, num_known + 1), num_known)


class DomainAdaptationMetrics(torchmetrics.Metric):
    """Every domain-adaptation number at once, accumulated over batches in a confusion matrix.

    ``compute()`` gives the keys of :func:`open_set_scores` plus ``mean_class_accuracy`` (mean
    recall over the known classes present; in closed-set DA the VisDA metric, in partial DA with
    the shared classes alone present the class-averaged accuracy; ``acc`` is then the micro one).

    Args:
        num_known: Number of known (source) classes; label ``num_known`` means "unknown".
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    Raises:
        ValueError: If ``num_known`` is not a positive integer, or an update has bad labels.

    Examples:
        >>> metric = DomainAdaptationMetrics(num_known=2)
        >>> metric.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))
        >>> metric.update(torch.tensor([[0.1, 0.9, 0.0]]), torch.tensor([0]))  # logits: argmax
        >>> {k: round(float(v), 4) for k, v in metric.compute().items()}
        {'os_star': 0.75, 'unk': 1.0, 'h_score': 0.8571, 'os': 0.8333, 'acc': 0.75, 'mean_class_accuracy': 0.75}
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, num_known: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_known = _check_count(num_known, "num_known")
        size = self.num_known + 1
        self.add_state("confmat", torch.zeros(size, size, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch: ``preds`` labels ``(N,)`` or scores ``(N, C)``, C = num_known or num_known + 1."""
        if isinstance(preds, Tensor) and preds.dim() == 2:
            if preds.shape[1] not in (self.num_known, self.num_known + 1):
                raise ValueError(f"`preds` scores must have {self.num_known} or {self.num_known + 1} columns, "
                                 f"got shape {tuple(preds.shape)}.")
            preds = preds.argmax(dim=1)
        _check_labels(preds, target, self.num_known + 1)
        device = self.confmat.device
        self.confmat += _confusion(preds.to(device), target.to(device), self.num_known + 1)

    def compute(self) -> dict[str, Tensor]:
        """The scores of :func:`open_set_scores` plus ``mean_class_accuracy``."""
        scores = _scores_from_confusion(self.confmat, self.num_known)
        scores["mean_class_accuracy"] = scores["os_star"].clone()
        return scores

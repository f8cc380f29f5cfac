"""Per-sample hardness scores (EL2N, GraNd), their average over runs and the scores file.

Paul, Ganguli & Dziugaite 2021, "Deep Learning on a Data Diet: Finding Important Examples Early
in Training" (NeurIPS, arXiv:2107.07075) score every training sample early in training:

- EL2N: the L2 norm of the error vector, ``|| softmax(f(x)) - onehot(y) ||_2``;
- GraNd: the L2 norm of the per-sample loss gradient w.r.t. the parameters,
  ``|| d loss(f(x), y) / d theta ||_2``.

Both are averaged over several independent short runs (:func:`average_scores`); a high score
marks a hard sample. Xiao et al. 2024, "Are Sparse Neural Networks Better Hard Sample
Learners?" (BMVC, arXiv:2409.09196) train sparse networks on the hardest share of CIFAR by
averaged EL2N.

Deviations: GraNd here is the gradient norm of the model as given (one run, one checkpoint);
the paper's expectation over initialisations is the mean over runs of :func:`average_scores`.

The scores file (:func:`save_scores`, :func:`read_scores`) is a ``torch.save`` of a dict::

    {"scores": float32 (N,), "indices": int64 (N,), "score": "el2n" | "grand", "epoch": int,
     "version": 1}

``indices[k]`` is the position of the sample scored ``scores[k]`` in the *full* training split
of its data set (``train_dataset.source_indices`` of the image DataModules), so a file stays
valid for any validation split, subset or seed that keeps those positions. ``epoch`` is the
number of completed training epochs when the scores were taken. Torch only: no Lightning here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

__all__ = ["SCORES", "average_scores", "el2n_scores", "grand_scores", "read_scores", "save_scores"]

SCORES = ("el2n", "grand")
"""The hardness scores this module computes."""
_VERSION = 1


def _check_batch(logits: Tensor, targets: Tensor) -> None:
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"`logits` must be a (B, C) tensor, got {shape}.")
    if not isinstance(targets, Tensor) or targets.shape != logits.shape[:1] or targets.is_floating_point():
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"`targets` must be an integer tensor of shape ({logits.shape[0]},), got {shape}.")


def el2n_scores(logits: Tensor, targets: Tensor) -> Tensor:
    """EL2N: ``|| softmax(logits) - onehot(targets) ||_2`` of every sample.

    Paul et al. 2021, "Deep Learning on a Data Diet: Finding Important Examples Early in
    Training", arXiv:2107.07075, Sec. 2. Higher is harder; the value lies in ``[0, sqrt(2)]``.

    Args:
        logits: ``(B, C)`` unnormalised class scores.
        targets: ``(B,)`` integer labels in ``[0, C)``.

    Returns:
        ``(B,)`` float scores (the dtype of ``logits``, at least float32), detached.

    Raises:
        ValueError: If the shapes or dtypes do not fit.

    Examples:
        >>> logits = torch.tensor([[10.0, -10.0], [0.0, 0.0]])
        >>> el2n_scores(logits, torch.tensor([0, 1])).round(decimals=4)
        tensor([0.0000, 0.7071])
    """
    _check_batch(logits, targets)
    probs = torch.softmax(logits.detach().float(), dim=-1)  # (B, C)
    onehot = F.one_hot(targets.long(), probs.shape[-1]).to(probs.dtype)  # (B, C)
    return torch.linalg.vector_norm(probs - onehot, dim=-1)  # (B,)


def _batch_norms_in_training(model: nn.Module) -> list[str]:
    return [name or type(model).__name__ for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]


def grand_scores(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    params: Mapping[str, Tensor] | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    *,
    chunk_size: int | None = None,
) -> Tensor:
    """GraNd: the L2 norm of each sample's loss gradient w.r.t. the parameters.

    Paul et al. 2021, "Deep Learning on a Data Diet: Finding Important Examples Early in
    Training", arXiv:2107.07075, Sec. 2. Computed in one vectorised pass with ``torch.func``
    (``vmap(grad(loss))`` over ``functional_call``): each sample is fed alone, as a batch of one.

    The model runs in the mode it is in. Put it in evaluation mode (``model.eval()``): BatchNorm
    in training mode would normalise each batch of one with its own statistics and update the
    running ones in place, which ``vmap`` refuses (a ``ValueError`` here), and dropout in
    training mode is random, which ``vmap`` refuses too.

    Args:
        model: The network, ``model(inputs[i:i+1])`` giving ``(1, C)`` logits.
        inputs: ``(B, ...)`` inputs.
        targets: ``(B,)`` labels (or what ``loss_fn`` takes, batched on dim 0).
        params: The parameters to differentiate, ``name -> tensor`` as in
            ``model.named_parameters()``; default every parameter with ``requires_grad``. The
            others keep the model's values.
        loss_fn: ``loss_fn(logits (1, C), target (1,))`` -> scalar; default cross-entropy.
        chunk_size: Samples per vectorised chunk (``vmap``'s ``chunk_size``; None: all at once),
            to bound memory.

    Returns:
        ``(B,)`` float scores, detached.

    Raises:
        ValueError: If ``inputs`` and ``targets`` differ in length, there is nothing to
            differentiate, or a BatchNorm layer is in training mode.

    Examples:
        >>> model = nn.Linear(3, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.zero_()
        >>> # zero logits: grad of cross-entropy is (softmax - onehot) x^T, norm 0.5 * sqrt(2) * ||x||
        >>> grand_scores(model, torch.tensor([[3.0, 4.0, 0.0], [1.0, 0.0, 0.0]]), torch.tensor([0, 1]))
        tensor([3.5355, 0.7071])
    """
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor) or len(inputs) != len(targets):
        raise ValueError(
            "`inputs` and `targets` must be tensors with one entry per sample on dim 0, got lengths "
            f"{len(inputs) if isinstance(inputs, Tensor) else type(inputs).__name__} and "
            f"{len(targets) if isinstance(targets, Tensor) else type(targets).__name__}."
        )
    training_bn = _batch_norms_in_training(model)
    if training_bn:
        raise ValueError(
            f"`model` has BatchNorm layers in training mode ({', '.join(training_bn[:4])}): per-sample "
            "gradients need fixed statistics; call `model.eval()` first."
        )
    if params is None:
        params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    params = {name: p.detach() for name, p in params.items()}
    if not params:
        raise ValueError("`params` must name at least one parameter to differentiate, got none.")
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn

    def sample_loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        logits = functional_call(model, (p, buffers), (x.unsqueeze(0),))  # (1, C)
        return loss_fn(logits, y.unsqueeze(0))

    with torch.enable_grad():
        grads = vmap(grad(sample_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)(params, inputs, targets)
    squares = sum(g.detach().float().flatten(1).pow(2).sum(1) for g in grads.values())  # (B,)
    return squares.sqrt()


def average_scores(scores: Sequence[Tensor]) -> Tensor:
    """The mean of per-sample scores over runs (the data-diet papers average 10 runs).

    Args:
        scores: One ``(N,)`` tensor per run, the same samples in the same order.

    Returns:
        ``(N,)`` float mean.

    Raises:
        ValueError: If ``scores`` is empty or the shapes differ.

    Examples:
        >>> average_scores([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])])
        tensor([2., 1.])
    """
    if isinstance(scores, Tensor) or not len(scores):
        raise ValueError(f"`scores` must be a non-empty list of (N,) tensors, got {type(scores).__name__}.")
    shapes = {tuple(s.shape) for s in scores}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"`scores` must all have the same shape (N,), got {sorted(shapes)}.")
    return torch.stack([s.detach().float().cpu() for s in scores]).mean(0)


def save_scores(path: str | os.PathLike, scores: Tensor, indices: Tensor, score: str, epoch: int) -> None:
    """Write a scores file (format: the module docstring), atomically.

    Args:
        path: File to write; its folder is created.
        scores: ``(N,)`` scores.
        indices: ``(N,)`` distinct positions of the samples in the full training split.
        score: Name of the score, one of :data:`SCORES`.
        epoch: Completed training epochs when the scores were taken.

    Raises:
        ValueError: If the shapes differ, ``indices`` repeat or ``score`` is unknown.

    Examples:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "el2n.pt")
        >>> save_scores(path, torch.tensor([0.5, 0.1]), torch.tensor([7, 3]), "el2n", epoch=2)
        >>> read_scores(path)
        (tensor([0.1000, 0.5000]), tensor([3, 7]))
    """
    if score not in SCORES:
        raise ValueError(f"`score` must be one of {SCORES}, got {score!r}.")
    scores, indices = scores.detach().float().cpu().flatten(), indices.detach().long().cpu().flatten()
    if scores.shape != indices.shape or len(torch.unique(indices)) != len(indices):
        raise ValueError(f"`indices` must be {len(scores)} distinct positions, one per score, got "
                         f"{len(torch.unique(indices))} distinct of {len(indices)}.")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    torch.save({"scores": scores, "indices": indices, "score": score, "epoch": int(epoch),
                "version": _VERSION}, tmp)
    os.replace(tmp, path)


def _read_one(path: str | os.PathLike) -> dict:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"scores file {os.fspath(path)!r} does not exist (write it with "
                                "HardnessScores or save_scores).") from None
    if not isinstance(data, dict) or not {"scores", "indices", "score"} <= set(data):
        raise ValueError(f"{os.fspath(path)} is not a scores file: expected a dict with `scores`, `indices`, "
                         f"`score`, got {sorted(data) if isinstance(data, dict) else type(data).__name__}.")
    return data


def read_scores(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[Tensor, Tensor]:
    """Read one scores file, or several (runs) averaged per sample.

    Args:
        paths: One path or a list of paths, each written by :func:`save_scores` (e.g. by
            ``lightning_sparse.callbacks.hardness.HardnessScores``) for the same samples and the
            same score.

    Returns:
        ``(scores, indices)``: float32 ``(N,)`` mean scores and int64 ``(N,)`` positions in the
        full training split, sorted by position.

    Raises:
        FileNotFoundError: If a file is missing.
        ValueError: If a file is not a scores file or holds non-finite scores, or the files
            score different samples or different scores.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> save_scores(f"{folder}/a.pt", torch.tensor([1.0, 0.0]), torch.tensor([0, 1]), "el2n", 1)
        >>> save_scores(f"{folder}/b.pt", torch.tensor([0.0, 3.0]), torch.tensor([1, 0]), "el2n", 1)
        >>> read_scores([f"{folder}/a.pt", f"{folder}/b.pt"])
        (tensor([2., 0.]), tensor([0, 1]))
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("`paths` must name at least one scores file, got an empty list.")
    runs, indices, names = [], None, set()
    for path in paths:
        data = _read_one(path)
        order = torch.argsort(data["indices"])
        idx, scores = data["indices"][order].long(), data["scores"][order].float()
        if indices is not None and not torch.equal(idx, indices):
            raise ValueError(f"{os.fspath(path)} scores other samples than {os.fspath(paths[0])} "
                             f"({len(idx)} vs {len(indices)} positions): average runs on the same training set.")
        if not torch.isfinite(scores).all():
            raise ValueError(f"{os.fspath(path)} holds {int((~torch.isfinite(scores)).sum())} non-finite scores "
                             "(a diverged run?): score again.")
        indices = idx
        names.add(data["score"])
        runs.append(scores)
    if len(names) > 1:
        raise ValueError(f"the scores files hold different scores {sorted(names)}: average one kind at a time.")
    return average_scores(runs), indices

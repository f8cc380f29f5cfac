"""Multi-task learning with learned task weights by multi-objective meta learning (MOML), and baselines.

MOML (Ye, Lin, Yang, Zhang, "Multi-Objective Meta Learning", NeurIPS 2021, arXiv:2102.07121; AIJ
2024; code Baijiong-Lin/MOML, ``MTL/moml_office.py``): the task weights ``softmax(alpha)`` are
meta-parameters of a bilevel problem. Per training batch:

1. **lower level, unrolled**: ``omega' = omega - eta * grad_omega sum_k softmax(alpha)_k L_k^train(omega)``
   (``inner_steps`` steps, differentiable; :func:`~lightning_sparse.core.bilevel.unrolled_parameters`
   on ``torch.func.functional_call``, no copy of the model, batch-norm statistics of the look-ahead
   kept off the model);
2. **upper level**: one objective per task, ``f_k = L_k^val(omega')``; their hypergradients with
   respect to ``alpha`` (:func:`~lightning_sparse.core.bilevel.hypergradients`);
3. **MGDA**: the min-norm convex combination ``lambda`` of the (normalised) hypergradients
   (:func:`~lightning_sparse.core.min_norm.min_norm_weights`), and an Adam step of ``alpha`` along
   ``sum_k lambda_k grad_alpha f_k``, a common descent direction of every task's validation loss
   (``upper_level="sum"``: the plain sum, the paper's single-objective ablation);
4. **the real step**: Adam on ``omega`` with ``sum_k softmax(alpha)_k L_k^trval(omega)`` on fresh
   batches of train + val (the official ``trval`` loaders).

Baselines on the same network and data: ``method="ew"`` (equal weighting: the mean task loss on
``trval``) and ``method="mgda"`` (MGDA-UB of Sener & Koltun 2018, arXiv:1810.04650: the min-norm
weights of the per-task gradients of the shared parameters, on ``trval``).

Logs ``train/loss``, ``train/loss_<task>``, ``train/task_weight_<task>`` (``softmax(alpha)``),
``train/mgda_weight_<task>`` and ``train/min_norm`` (``||sum_k lambda_k g_k||`` of the normalised
gradients: 0 at a Pareto-stationary point); ``val/acc_<task>``, ``val/acc`` (their mean), and the
same for ``test``. Under DDP the hypergradients (and MGDA's weights) are averaged over ranks, so
every rank takes the same ``alpha`` step.

Batches: training ``{"train": [(x, y)] * K, "val": [...], "trval": [...]}`` (one pair per task),
evaluation ``(x, y)`` with one loader per task
(:class:`~lightning_sparse.data.domain.MultiTaskDataModule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_sparse._validation import check_int, check_number
from lightning_sparse.core.bilevel import functional_forward, hypergradients, unrolled_parameters
from lightning_sparse.core.min_norm import NORMALIZATIONS, gradient_normalizers, min_norm_direction, min_norm_weights
from lightning_sparse.models.multi_task import MultiTaskNet
from lightning_sparse.tasks.base import SparseTask, check_choice_list

__all__ = ["METHODS", "MultiObjectiveMetaLearner"]

METHODS = ("ew", "mgda", "moml")


class MultiObjectiveMetaLearner(SparseTask):
    """Multi-task classification: equal weights, MGDA, or MOML's learned task weights.

    Args:
        backbone: Registered backbone of :class:`~lightning_sparse.models.MultiTaskNet`.
        num_classes: Classes per task (a list) or one count for ``num_tasks`` tasks.
        num_tasks: Number of tasks when ``num_classes`` is one count.
        task_names: Names used in the logs (default ``task0``, ``task1``, ...).
        method: ``"ew"``, ``"mgda"`` or ``"moml"``.
        upper_level: MOML's upper level: ``"mgda"`` (the min-norm common direction) or ``"sum"``.
        normalization: Gradient normalisation before the min-norm solver (``"l2"``, as the
            official code; ``"none"``, ``"loss"``, ``"loss+"``).
        hidden_dim: Shared hidden layer width (512).
        dropout: Its dropout (0.5).
        lr: Adam learning rate of the network (1e-4).
        weight_decay: Adam weight decay of the network.
        meta_lr: Adam learning rate of ``alpha`` (1e-3).
        inner_lr: Step size of the unrolled lower-level steps (1e-4).
        inner_steps: Unrolled steps ``T`` (1).
        backbone_kwargs: Extra arguments of the backbone builder.
        backbone_checkpoint: Local weights of the backbone (e.g. torchvision's ImageNet ResNet-18
            for ``resnet18_imagenet``), loaded when ``fit`` starts.

    Raises:
        ValueError: If an argument is out of range or names an unknown method.

    Examples:
        >>> task = MultiObjectiveMetaLearner("small_cnn", [3, 2], method="moml", hidden_dim=8,
        ...                                  backbone_kwargs={"in_channels": 1, "width": 4})
        >>> pair = lambda k: (torch.randn(4, 1, 8, 8), torch.randint(0, [3, 2][k], (4,)))
        >>> batch = {s: [pair(0), pair(1)] for s in ("train", "val", "trval")}
        >>> out = task.meta_step(batch)
        >>> sorted(out), out["mgda_weights"].sum().item()
        (['hypergradients', 'mgda_weights', 'min_norm', 'upper'], 1.0)
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int | Sequence[int] = 10,
        num_tasks: int = 2,
        task_names: Sequence[str] | None = None,
        method: str = "moml",
        upper_level: str = "mgda",
        normalization: str = "l2",
        hidden_dim: int = 512,
        dropout: float = 0.5,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        meta_lr: float = 1e-3,
        inner_lr: float = 1e-4,
        inner_steps: int = 1,
        backbone_kwargs: dict[str, Any] | None = None,
        backbone_checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        check_choice_list("method", method, METHODS)
        check_choice_list("upper_level", upper_level, ("mgda", "sum"))
        check_choice_list("normalization", normalization, NORMALIZATIONS)
        for name, value in (("lr", lr), ("meta_lr", meta_lr), ("inner_lr", inner_lr)):
            check_number(name, value, 0.0, low_open=True)
        check_number("weight_decay", weight_decay, 0.0)
        check_int("inner_steps", inner_steps, 1)
        check_int("hidden_dim", hidden_dim, 0)
        self.net = MultiTaskNet(backbone, num_classes, num_tasks, hidden_dim, dropout, backbone_kwargs)
        k = self.net.num_tasks
        names = list(task_names) if task_names is not None else [f"task{i}" for i in range(k)]
        if len(names) != k or len(set(names)) != k:
            raise ValueError(f"`task_names` must be {k} distinct names (one per task), got {names!r}.")
        self.task_names = names
        self.save_hyperparameters()
        self.automatic_optimization = False
        # the meta-parameters: task-weight logits, 1/K each as the official Model_h (softmax: equal)
        self.alpha = nn.Parameter(torch.full((k,), 1.0 / k)) if method == "moml" else None
        for stage in ("val", "test"):
            setattr(self, f"{stage}_acc", nn.ModuleList(MulticlassAccuracy(c, average="micro")
                                                       for c in self.net.num_classes))

    # ------------------------------------------------------------------ pieces
    def backbone_module(self) -> nn.Module:
        return self.net.backbone

    def forward(self, x: Tensor, task: int = 0) -> Tensor:
        return self.net(x, task)

    @property
    def task_weights(self) -> Tensor:
        """``softmax(alpha)`` for MOML, equal weights otherwise."""
        if self.alpha is None:
            return torch.full((self.net.num_tasks,), 1.0 / self.net.num_tasks, device=self.device)
        return torch.softmax(self.alpha, dim=0)

    def task_losses(self, pairs: Sequence[Any], params: dict[str, Tensor] | None = None) -> Tensor:
        """Cross-entropy of every task on its ``(x, y)`` pair, ``(K,)``; with ``params``, of the network
        run with those parameters (and copies of its buffers)."""
        if len(pairs) != self.net.num_tasks:
            raise ValueError(f"`batch` must hold one (x, y) pair per task ({self.net.num_tasks}), got {len(pairs)}.")
        losses = []
        for k, (x, y) in enumerate(pairs):
            logits = self.net(x, k) if params is None else functional_forward(self.net, params, x, k)
            losses.append(F.cross_entropy(logits, y))
        return torch.stack(losses)

    def _reduce(self, value: Tensor) -> Tensor:
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            return trainer.strategy.reduce(value, reduce_op="mean")
        return value

    def min_norm(self, grads: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        """MGDA's weights of the normalised rows of ``grads`` and ``||sum_k lambda_k g~_k||``."""
        norm = self.hparams.normalization
        weights = self._reduce(min_norm_weights(grads, norm, losses=losses))
        scales = gradient_normalizers(grads, losses, norm).to(grads.dtype)
        return weights, min_norm_direction(grads / scales[:, None], weights.to(grads.dtype)).norm()

    def meta_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """MOML's upper-level step on ``alpha`` (steps 1-3 of the module docstring): sets
        ``alpha.grad`` and returns the upper objectives, hypergradients, MGDA weights and min norm."""
        hp = self.hparams
        params = dict(self.net.named_parameters())
        alpha = self.alpha

        def lower(p: dict[str, Tensor]) -> Tensor:
            return (torch.softmax(alpha, dim=0) * self.task_losses(batch["train"], p)).sum()

        fast = unrolled_parameters(params, lower, hp.inner_lr, hp.inner_steps)
        upper = self.task_losses(batch["val"], fast)  # (K,)
        hyper = self._reduce(hypergradients(list(upper), [alpha]))  # (K, K): one row per objective
        weights, min_norm = self.min_norm(hyper, upper.detach())
        combine = weights if hp.upper_level == "mgda" else torch.ones_like(weights)
        alpha.grad = min_norm_direction(hyper, combine.to(hyper.dtype)).view_as(alpha).to(alpha.dtype)
        return {"upper": upper.detach(), "hypergradients": hyper, "mgda_weights": weights, "min_norm": min_norm}

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        if not isinstance(batch, dict) or not {"train", "val", "trval"} <= set(batch):
            got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise ValueError(f"`batch` must be a dict with 'train', 'val' and 'trval', got {got}.")
        hp = self.hparams
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        log: dict[str, Tensor] = {}
        if hp.method == "moml":
            meta_opt = optimizers[1]
            meta_opt.zero_grad()
            out = self.meta_step(batch)
            meta_opt.step()
            log.update(min_norm=out["min_norm"])
            mgda = out["mgda_weights"]
        losses = self.task_losses(batch["trval"])  # (K,) the real step, on fresh train + val batches
        if hp.method == "ew":
            loss = losses.mean()
        elif hp.method == "mgda":
            shared = [p for p in self.net.shared_parameters() if p.requires_grad]
            grads = hypergradients(list(losses), shared, retain_graph=True)
            mgda, log["min_norm"] = self.min_norm(grads, losses.detach())
            loss = (mgda.detach().to(losses.dtype) * losses).sum()
        else:
            # alpha took its own step above; the zero term only keeps DDP from calling it unused
            loss = (self.task_weights.detach() * losses).sum() + 0.0 * self.alpha.sum()
        net_opt = optimizers[0]
        net_opt.zero_grad()
        self.manual_backward(loss)
        net_opt.step()
        batch_size = len(batch["trval"][0][1])
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size)
        for k, name in enumerate(self.task_names):
            self.log(f"train/loss_{name}", losses[k].detach(), on_step=False, on_epoch=True, batch_size=batch_size)
            self.log(f"train/task_weight_{name}", self.task_weights[k].detach(), batch_size=batch_size)
            if hp.method != "ew":
                self.log(f"train/mgda_weight_{name}", mgda[k].detach(), batch_size=batch_size)
        for key, value in log.items():
            self.log(f"train/{key}", value.detach(), batch_size=batch_size)
        return loss.detach()

    # ------------------------------------------------------------------ evaluation (one loader per task)
    def _eval(self, batch: Any, stage: str, task: int) -> None:
        x, y = batch[0], batch[1]
        getattr(self, f"{stage}_acc")[task].update(self.net(x, task), y)

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval(batch, "val", dataloader_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval(batch, "test", dataloader_idx)

    def _log_accuracy(self, stage: str) -> None:
        metrics = getattr(self, f"{stage}_acc")
        accs = []
        for name, metric in zip(self.task_names, metrics):
            if metric.update_count == 0:
                continue
            acc = metric.compute()
            accs.append(acc)
            self.log(f"{stage}/acc_{name}", acc, add_dataloader_idx=False)
            metric.reset()
        if accs:
            self.log(f"{stage}/acc", torch.stack(accs).mean(), prog_bar=stage == "val", add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        self._log_accuracy("val")

    def on_test_epoch_end(self) -> None:
        self._log_accuracy("test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Predicted classes of task ``dataloader_idx``."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.net(x, dataloader_idx).argmax(dim=1)

    # ------------------------------------------------------------------ optimization
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizers = [torch.optim.Adam(self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)]
        if self.alpha is not None:
            optimizers.append(torch.optim.Adam([self.alpha], lr=hp.meta_lr))
        return optimizers

    @property
    def optimizers_per_batch(self) -> int:
        """Optimizers stepped per batch (Lightning's ``max_steps`` counts each one's steps)."""
        return 1 + (self.alpha is not None)

"""Unsupervised domain adaptation in four settings: source-only, uniform OT, and LIWUDA.

LIWUDA (Zhu et al. 2023, "Learning Instance Weighting for Unsupervised Domain Adaptation",
arXiv:2312.05024; official code JinjingZhu/LIWUDA, one script per setting): a weight network
(:class:`~lightning_sparse.models.domain_adaptation.InstanceWeightNet`) gives every instance its
probability of belonging to the classes source and target share; Weighted Optimal Transport (WOT)
aligns the two batches with those weights as marginals (:mod:`lightning_sparse.core.transport`);
the loss terms are the pure functions of :mod:`lightning_sparse.core.instance_weighting`. Which
side carries weights follows from the setting: the source in ``partial`` (it has private
classes), the target in ``open``, both in ``universal``; ``closed`` uses the class-conditional
WOT of the closed-set script. The coefficients per setting (:data:`LOSS_PRESETS`) are the
scripts'; ``loss_weights`` overrides any of them.

Inference: ``open`` / ``universal`` call a target instance "unknown" (label ``num_classes``) when
its weight is at most ``unknown_threshold`` (0.5, as the scripts; ``source_only`` and ``ot``,
which have no weights, when their top softmax probability is: the usual confidence rejection); ``partial`` / ``universal``
restrict the prediction to the shared classes, those whose mean source weight (over the current
training epoch so far, all ranks, kept in checkpoints) is at least ``unshared_threshold``.

Where the official code differs, on purpose:
- its unshared-class test is ``mean_weight < 0``, which a sigmoid never meets (every class stays
  shared); we follow the paper with ``unshared_threshold=0.5`` (``0.0`` reproduces the scripts);
- its open-set script has every term but the classification loss commented out; we use the terms
  the paper describes (the commented ones);
- its classifier is left out of the optimizer in three scripts; ours is trained;
- its learning-rate decay and ramp are per epoch; ours per batch, ``p = batch / total_batches``.

Lightning counts every optimizer's steps in ``global_step`` / ``max_steps``: with the weight network
(``liwuda`` outside ``closed``) ``max_steps=N`` trains ``N / 2`` batches
(:attr:`DomainAdaptation.optimizers_per_batch`); ``max_epochs`` means the same for every method.

Manual optimization: SGD (momentum 0.9, weight decay 5e-4) on the network, the backbone at
``backbone_lr_scale`` of ``lr``; Adam on the weight network; both decayed by
``(1 + 10 p)^-0.75``. Lightning's ``accumulate_grad_batches`` is not available with manual
optimization (the transport plans are per mini-batch anyway).

Batches: training ``{"source", "source_label", "target"}`` (no target labels), evaluation
``(x, y)`` of the target with ``y == num_classes`` for target-private classes
(:class:`~lightning_sparse.data.domain.DomainAdaptationDataModule`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_sparse._training import estimated_stepping_batches
from lightning_sparse._validation import check_bool, check_int, check_number
from lightning_sparse.core import instance_weighting as iw
from lightning_sparse.core.transport import (
    SOLVERS,
    class_conditional_transport_cost,
    cosine_cost,
    normalize_marginal,
    transport_plan,
    uniform_marginal,
)
from lightning_sparse.metrics.uda import DomainAdaptationMetrics
from lightning_sparse.models import create_model
from lightning_sparse.models.domain_adaptation import DomainAdaptationNet, InstanceWeightNet, strip_classifier
from lightning_sparse.tasks.base import SparseTask, check_choice_list, merge_backbone_kwargs

__all__ = ["DomainAdaptation", "LOSS_PRESETS", "METHODS", "SETTINGS"]

SETTINGS = ("closed", "partial", "open", "universal")
METHODS = ("source_only", "ot", "liwuda")

_TERMS = ("cls", "class_wot", "ot", "wot", "sa", "rank", "iot", "align", "weight_one", "pseudo")
LOSS_PRESETS: dict[str, dict[str, float]] = {
    # closed-set script: cls + ramp * class-conditional WOT
    "closed": {"cls": 1.0, "class_wot": 1.0},
    # partial script: weights on the source; IOT on the (all-shared) target
    "partial": {"cls": 2.0, "wot": 0.1, "sa": 0.3, "rank": 0.05, "iot": 0.05, "align": 0.2, "pseudo": 1.0},
    # open-set: weights on the target; IOT on the (all-shared) source; weighted pseudo-labels
    "open": {"cls": 2.0, "wot": 0.1, "sa": 0.3, "rank": 0.05, "iot": 0.05, "align": 0.2, "weight_one": 0.05,
             "pseudo": 1.0},
    # universal script: weights on both sides, no IOT
    "universal": {"cls": 2.0, "wot": 0.1, "sa": 0.3, "rank": 0.05, "align": 0.2, "weight_one": 0.05,
                  "pseudo": 1.0},
}
"""LIWUDA's loss coefficients per setting (the official scripts'); every term but ``cls`` and
``pseudo`` is multiplied by the ramp. ``source_only`` uses ``cls: 1``, ``ot`` adds ``ot: 1``."""

_SCORE_KEY = {"closed": "acc", "partial": "acc", "open": "h_score", "universal": "h_score"}


class DomainAdaptation(SparseTask):
    """Closed-set, partial, open-set or universal domain adaptation with a registered backbone.

    Logs ``train/loss`` and each loss term (``train/sa`` ...), ``val/<m>`` and ``test/<m>`` for the
    metrics of :class:`~lightning_sparse.metrics.uda.DomainAdaptationMetrics` (``acc``,
    ``mean_class_accuracy``, ``os_star``, ``unk``, ``h_score``, ``os``), ``val/score`` (``acc`` for
    ``closed`` / ``partial``, ``h_score`` for ``open`` / ``universal``: a checkpoint monitor) and the
    mean weights of known and unknown target instances (``val/weight_known``, ``val/weight_unknown``).

    Args:
        backbone: Name of a registered model; its last linear classifier is removed.
        backbone_kwargs: Extra keyword arguments of the backbone builder.
        num_classes: Source classes ``K`` (the classifier size); the unknown label is ``K``.
        setting: ``"closed"``, ``"partial"``, ``"open"`` or ``"universal"``.
        method: ``"source_only"``, ``"ot"`` (uniform-weight OT between the batches) or ``"liwuda"``.
        backbone_checkpoint: Local path of backbone weights (a state dict, or a checkpoint with
            ``"state_dict"``), e.g. torchvision's ImageNet ResNet-50 for ``resnet50_imagenet``;
            loaded when ``fit`` starts (nothing is downloaded).
        bottleneck_dim: Bottleneck size (256); ``0`` for none.
        temperature: Logit temperature (0.05).
        cosine_classifier: Normalise the classifier's rows (see the models module).
        lr: Learning rate of the bottleneck and classifier (0.01).
        backbone_lr_scale: The backbone's share of ``lr`` (0.1).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        weight_lr: Adam learning rate of the weight network (1e-3).
        solver: Transport solver, ``"exact"`` or ``"entropic"``.
        entropic_reg: Regularisation of the entropic solver.
        transport_mass: Share of the mass transported, in ``(0, 1]``.
        loss_weights: Overrides of :data:`LOSS_PRESETS` (keys among its terms).
        confidence_threshold: Softmax confidence of a target pseudo-label (0.9).
        unknown_threshold: Weight at or below which a target instance is unknown (0.5).
        unshared_threshold: Mean source weight below which a class is unshared (0.5; 0 = scripts).
        pseudo_min_weight: Open-set pseudo-labels need a weight above it (0.3).

    Raises:
        ValueError: If an argument is out of range or names an unknown setting, method, solver,
            backbone or loss term.

    Examples:
        >>> task = DomainAdaptation("small_cnn", {"in_channels": 1, "width": 4}, num_classes=3, setting="open")
        >>> batch = {"source": torch.randn(4, 1, 8, 8), "source_label": torch.tensor([0, 1, 2, 0]),
        ...          "target": torch.randn(4, 1, 8, 8)}
        >>> losses = task.compute_losses(batch, progress=0.5)
        >>> sorted(losses)[:4], losses["loss"].dim()
        (['align', 'cls', 'iot', 'loss'], 0)
        >>> task.predict(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2])
    """

    prog_bar_metrics = ("score",)

    def __init__(
        self,
        backbone: str,
        backbone_kwargs: dict[str, Any] | None = None,
        num_classes: int = 10,
        setting: str = "closed",
        method: str = "liwuda",
        backbone_checkpoint: str | None = None,
        bottleneck_dim: int = 256,
        temperature: float = 0.05,
        cosine_classifier: bool = True,
        lr: float = 0.01,
        backbone_lr_scale: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        weight_lr: float = 1e-3,
        solver: str = "exact",
        entropic_reg: float = 0.05,
        transport_mass: float = 1.0,
        loss_weights: dict[str, float] | None = None,
        confidence_threshold: float = 0.9,
        unknown_threshold: float = 0.5,
        unshared_threshold: float = 0.5,
        pseudo_min_weight: float = 0.3,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, 2)
        check_choice_list("setting", setting, SETTINGS)
        check_choice_list("method", method, METHODS)
        check_choice_list("solver", solver, SOLVERS)
        check_int("bottleneck_dim", bottleneck_dim, 0)
        check_bool("cosine_classifier", cosine_classifier)
        for name, value in (("temperature", temperature), ("lr", lr), ("weight_lr", weight_lr),
                            ("entropic_reg", entropic_reg)):
            check_number(name, value, 0.0, low_open=True)
        check_number("backbone_lr_scale", backbone_lr_scale, 0.0)
        check_number("momentum", momentum, 0.0, 1.0, high_open=True)
        check_number("weight_decay", weight_decay, 0.0)
        check_number("transport_mass", transport_mass, 0.0, 1.0, low_open=True)
        for name, value in (("confidence_threshold", confidence_threshold), ("unknown_threshold", unknown_threshold),
                            ("unshared_threshold", unshared_threshold), ("pseudo_min_weight", pseudo_min_weight)):
            check_number(name, value, 0.0, 1.0)
        self.coefficients = self._coefficients(setting, method, loss_weights)
        self.save_hyperparameters()
        self.automatic_optimization = False
        model = create_model(backbone, **merge_backbone_kwargs(backbone_kwargs, num_classes=num_classes))
        feature_dim = strip_classifier(model)
        self.net = DomainAdaptationNet(model, feature_dim, num_classes, bottleneck_dim, temperature, cosine_classifier)
        self.uses_weights = method == "liwuda" and setting != "closed"
        self.weight_net = InstanceWeightNet(self.net.feature_dim) if self.uses_weights else None
        self.register_buffer("class_weights", torch.ones(num_classes))  # mean source weight per class
        self.register_buffer("_weight_sums", torch.zeros(num_classes))
        self.register_buffer("_weight_counts", torch.zeros(num_classes))
        self.register_buffer("_weight_epoch", torch.zeros((), dtype=torch.long))
        for stage in ("val", "test"):
            setattr(self, f"{stage}_scores", DomainAdaptationMetrics(num_classes))

    def backbone_module(self) -> torch.nn.Module:
        """Where ``backbone_checkpoint`` is loaded: the backbone without its classifier."""
        return self.net.backbone

    @staticmethod
    def _coefficients(setting: str, method: str, overrides: dict[str, float] | None) -> dict[str, float]:
        base = {"cls": 1.0} if method != "liwuda" else dict(LOSS_PRESETS[setting])
        if method == "ot":
            base["ot"] = 1.0
        for key, value in (overrides or {}).items():
            check_choice_list("loss_weights", key, _TERMS)
            check_number(f"loss_weights[{key!r}]", value, 0.0)
            base[key] = float(value)
        return base

    # ------------------------------------------------------------------ forward and inference
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(features, logits)`` of the network (see :class:`DomainAdaptationNet`)."""
        return self.net(x)

    @property
    def shared_classes(self) -> Tensor:
        """Bool ``(K,)``: the classes inference may predict (all but the unshared ones)."""
        if self.hparams.setting in ("partial", "universal") and self.uses_weights:
            shared = self.class_weights >= self.hparams.unshared_threshold
            return shared if shared.any() else torch.ones_like(shared)
        return torch.ones_like(self.class_weights, dtype=torch.bool)

    def predict(self, x: Tensor) -> Tensor:
        """Predicted labels ``(B,)`` in ``0..K``, ``K`` meaning unknown (open / universal)."""
        return self._predict(*self(x))

    def _predict(self, features: Tensor, logits: Tensor) -> Tensor:
        preds = logits.masked_fill(~self.shared_classes, float("-inf")).argmax(dim=1)
        if self.hparams.setting in ("open", "universal"):
            score = self.weight_net(features) if self.uses_weights else F.softmax(logits, dim=1).amax(dim=1)
            preds = torch.where(score <= self.hparams.unknown_threshold,
                                torch.full_like(preds, self.hparams.num_classes), preds)
        return preds

    # ------------------------------------------------------------------ losses
    def _plan(self, a: Tensor, b: Tensor, cost: Tensor) -> Tensor:
        hp = self.hparams
        return transport_plan(a, b, cost, hp.solver, hp.transport_mass, hp.entropic_reg)

    def compute_losses(self, batch: dict[str, Tensor], progress: float) -> dict[str, Tensor]:
        """Every loss term of a training batch and their total ``"loss"`` at training ``progress``.

        Raises:
            ValueError: If ``batch`` is not a dict with ``source``, ``source_label`` and ``target``.
        """
        if not isinstance(batch, dict) or not {"source", "source_label", "target"} <= set(batch):
            got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise ValueError(f"`batch` must be a dict with 'source', 'source_label' and 'target', got {got}.")
        hp, c = self.hparams, self.coefficients
        ys = batch["source_label"]
        fs, ls = self(batch["source"])  # separate passes: per-domain batch-norm statistics
        ft, lt = self(batch["target"])
        terms: dict[str, Tensor] = {"cls": F.cross_entropy(ls, ys)}
        if "ot" in c:
            cost = cosine_cost(fs, ft)
            plan = self._plan(uniform_marginal(len(fs), cost), uniform_marginal(len(ft), cost), cost)
            terms["ot"] = (plan * cost).sum()
        if hp.method == "liwuda" and hp.setting == "closed":
            terms["class_wot"] = class_conditional_transport_cost(fs, ft, ys, F.softmax(lt, dim=1), hp.solver,
                                                                  hp.entropic_reg)
        elif self.uses_weights:
            terms.update(self._weighted_terms(fs, ft, ys, lt))
        ramp = iw.ramp(progress)
        total = sum(c.get(k, 0.0) * (v if k in ("cls", "pseudo") else ramp * v) for k, v in terms.items())
        return {"loss": total, **terms}

    def _weighted_terms(self, fs: Tensor, ft: Tensor, ys: Tensor, lt: Tensor) -> dict[str, Tensor]:
        hp, setting = self.hparams, self.hparams.setting
        ws, wt = self.weight_net(fs), self.weight_net(ft)  # (N,), (M,)
        source_weighted, target_weighted = setting in ("partial", "universal"), setting in ("open", "universal")
        cost = cosine_cost(fs, ft)  # (N, M)
        a = normalize_marginal(ws) if source_weighted else uniform_marginal(len(fs), cost)
        b = normalize_marginal(wt) if target_weighted else uniform_marginal(len(ft), cost)
        plan = self._plan(a, b, cost)
        zero = cost.sum() * 0.0
        wot, ranks = zero, []
        if source_weighted:
            wot = wot + iw.weight_transport_loss(plan, cost, a, dim=1)
            ranks.append(iw.rank_weight_loss(ws, iw.per_sample_transport_cost(plan, cost, a, dim=1)))
        if target_weighted:
            wot = wot + iw.weight_transport_loss(plan, cost, b, dim=0)
            ranks.append(iw.rank_weight_loss(wt, iw.per_sample_transport_cost(plan, cost, b, dim=0)))
            ranks.append(iw.rank_weight_loss(wt, iw.entropy(lt)))
        terms = {"sa": iw.separate_and_align_loss(plan, cost), "wot": wot, "rank": torch.stack(ranks).mean(),
                 "align": iw.source_alignment_loss(fs, ys)}
        if self.coefficients.get("iot", 0.0) > 0 and setting in ("partial", "open"):
            f, w = (ft, wt) if setting == "partial" else (fs, ws)  # the domain without private classes
            inner = cosine_cost(f, f)
            marginal = normalize_marginal(w)
            inner_plan = self._plan(uniform_marginal(len(f), inner), marginal, inner)
            terms["iot"] = iw.weight_transport_loss(inner_plan, inner, marginal, dim=0)
        open_set = setting == "open"
        terms["pseudo"], terms["weight_one"] = iw.confident_pseudo_label_loss(
            lt, wt, hp.confidence_threshold, None if open_set else self.shared_classes,
            min_weight=hp.pseudo_min_weight if open_set else None, weighted=open_set)
        if source_weighted:
            self._update_class_weights(ys, ws.detach())
        return terms

    def _update_class_weights(self, ys: Tensor, ws: Tensor) -> None:
        """The mean source weight per class over the current epoch so far (all ranks), updated every
        step so a checkpoint taken at any point holds a consistent state; a class not yet seen this
        epoch keeps its previous value."""
        trainer = self._trainer
        epoch = trainer.current_epoch if trainer is not None else 0
        if int(self._weight_epoch) != epoch:
            self._weight_sums.zero_()
            self._weight_counts.zero_()
            self._weight_epoch.fill_(epoch)
        sums = torch.zeros_like(self._weight_sums).index_add_(0, ys, ws.float())
        counts = torch.zeros_like(self._weight_counts).index_add_(0, ys, torch.ones_like(ws, dtype=torch.float))
        if trainer is not None and trainer.world_size > 1:
            sums = trainer.strategy.reduce(sums, reduce_op="sum")
            counts = trainer.strategy.reduce(counts, reduce_op="sum")
        self._weight_sums += sums
        self._weight_counts += counts
        seen = self._weight_counts > 0
        self.class_weights[seen] = self._weight_sums[seen] / self._weight_counts[seen]

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        schedulers = self.lr_schedulers()
        schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
        losses = self.compute_losses(batch, self._progress(schedulers[0]))
        for opt in optimizers:
            opt.zero_grad()
        self.manual_backward(losses["loss"])
        for opt in optimizers:
            opt.step()
        for scheduler in schedulers:
            scheduler.step()
        batch_size = len(batch["source_label"])
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=batch_size)
        for name, value in losses.items():
            if name != "loss":
                self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=batch_size)
        return losses["loss"]

    @property
    def optimizers_per_batch(self) -> int:
        """Optimizers stepped per training batch (2 with the weight network): Lightning's
        ``global_step`` and ``max_steps`` count each of their steps."""
        return 1 + (self.weight_net is not None)

    def total_batches(self) -> int:
        """Training batches of the run: ``trainer.estimated_stepping_batches``, with ``max_steps``
        (which counts every optimizer's steps) divided by :attr:`optimizers_per_batch`."""
        trainer = self.trainer
        total = int(estimated_stepping_batches(trainer))
        if trainer.max_steps > 0 and total >= trainer.max_steps:
            total = -(-trainer.max_steps // self.optimizers_per_batch)
        return max(1, total)

    def _progress(self, scheduler: Any) -> float:
        """Training progress ``p`` in ``[0, 1]``: batches trained (the schedule's count, kept in
        checkpoints) over :meth:`total_batches`."""
        return min(1.0, scheduler.last_epoch / self.total_batches())

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self.uses_weights and self.hparams.setting in ("partial", "universal"):
            self.log("train/shared_classes", self.shared_classes.sum().float())

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: Any, stage: str) -> None:
        x, y = batch[0], batch[1]
        features, logits = self(x)
        preds = self._predict(features, logits)
        getattr(self, f"{stage}_scores").update(preds, y)
        if self.uses_weights:
            w = self.weight_net(features)
            known = y < self.hparams.num_classes
            if known.any():
                self.log(f"{stage}/weight_known", w[known].mean(), batch_size=int(known.sum()))
            if (~known).any():
                self.log(f"{stage}/weight_unknown", w[~known].mean(), batch_size=int((~known).sum()))

    def _log_scores(self, stage: str) -> None:
        metric = getattr(self, f"{stage}_scores")
        scores = metric.compute()
        for name, value in scores.items():
            if torch.isfinite(value):
                self.log(f"{stage}/{name}", value, prog_bar=False, sync_dist=False)
        score = scores[_SCORE_KEY[self.hparams.setting]]
        self.log(f"{stage}/score", torch.nan_to_num(score, nan=0.0), prog_bar=stage == "val")
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Predicted labels ``(B,)`` (``K`` = unknown) for ``x`` or ``(x, ...)``."""
        return self.predict(batch[0] if isinstance(batch, (tuple, list)) else batch)

    # ------------------------------------------------------------------ optimization
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups = [{"params": self.net.backbone.parameters(), "lr": hp.lr * hp.backbone_lr_scale},
                  {"params": [*self.net.bottleneck.parameters(), *self.net.classifier.parameters()], "lr": hp.lr}]
        net_opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        optimizers = [net_opt]
        if self.weight_net is not None:
            optimizers.append(torch.optim.Adam(self.weight_net.parameters(), lr=hp.weight_lr))
        total = self.total_batches()

        def factor(step: int) -> float:
            return iw.inverse_decay(min(1.0, step / total))

        schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, factor) for opt in optimizers]
        return optimizers, [{"scheduler": s, "interval": "step"} for s in schedulers]


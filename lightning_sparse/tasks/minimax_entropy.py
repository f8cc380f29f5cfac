"""Semi-supervised domain adaptation by Minimax Entropy (MME), and MOML's multi-objective version.

MME (Saito, Kim, Sclaroff, Darrell, Saenko, "Semi-supervised Domain Adaptation via Minimax Entropy",
ICCV 2019, arXiv:1904.06487): a backbone ``G`` and a cosine classifier ``F``
(:class:`~lightning_sparse.models.MMENet`) trained with cross-entropy on the labelled source and
the few labelled target images, and an adversarial entropy term on the unlabelled target: through
a gradient reversal layer, ``F`` maximises and ``G`` minimises the entropy of the predictions
(``loss_t = lamda * mean(sum_c p_c log p_c)``, the official ``adentropy``).

MOML's SSDA instance (Ye et al., NeurIPS 2021, arXiv:2102.07121; code ``SSDA/moml_MME.py``) treats
the three losses as objectives of a bilevel problem: a look-ahead step of both networks on
``loss_t`` (``omega' = omega - eta * grad loss_t``, each group at its learning rate,
differentiable), the source and labelled-target cross-entropies at ``omega'`` and ``loss_t`` at
``omega``, and one step of ``sum_k lambda_k f_k`` with the MGDA weights ``lambda`` of their
gradients (normalised, as ``normalization``) — a common descent direction of the three.

``method``: ``"source_target"`` (S+T, cross-entropy only), ``"mme"`` (the two alternating steps of
the official MME: cross-entropy, then the entropy term) or ``"moml"``. Optimizers as the official
code: SGD with Nesterov momentum 0.9, weight decay 5e-4, the backbone at ``backbone_lr_scale`` of
``lr``, both decayed by ``(1 + 1e-4 step)^-0.75`` (MME's ``inv_lr_scheduler``).

Batches: training ``{"source", "source_label", "target", "target_label", "target_unlabeled"}``,
evaluation ``(x, y)`` of the target (:class:`~lightning_sparse.data.domain.SemiSupervisedDADataModule`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from lightning_sparse._validation import check_int, check_number
from lightning_sparse.core.bilevel import functional_forward, hypergradients, unrolled_parameters
from lightning_sparse.core.min_norm import NORMALIZATIONS, gradient_normalizers, min_norm_direction, min_norm_weights
from lightning_sparse.models.multi_task import MMENet
from lightning_sparse.tasks.base import SparseTask, check_choice_list

__all__ = ["MinimaxEntropyAdaptation", "adversarial_entropy"]

_KEYS = ("source", "source_label", "target", "target_label", "target_unlabeled")


def adversarial_entropy(logits: Tensor, lamda: float = 0.1) -> Tensor:
    """MME's ``adentropy``: ``lamda * mean(sum_c p_c log p_c)`` (minus the entropy, times ``lamda``).

    Computed on logits that passed a gradient reversal layer, minimising it maximises the entropy
    for the classifier and minimises it for the backbone.

    Examples:
        >>> round(adversarial_entropy(torch.zeros(2, 4), lamda=1.0).item(), 4)  # -log 4
        -1.3863
    """
    p = F.softmax(logits, dim=1)
    return lamda * (p * torch.log(p + 1e-5)).sum(dim=1).mean()


class MinimaxEntropyAdaptation(SparseTask):
    """S+T, MME or MOML-MME on a backbone and a cosine classifier (see the module docstring).

    Args:
        backbone: Registered backbone of :class:`~lightning_sparse.models.MMENet`.
        num_classes: Classes.
        method: ``"source_target"``, ``"mme"`` or ``"moml"``.
        lamda: Weight of the entropy term (0.1).
        temperature: Cosine-classifier temperature (0.05).
        hidden_dim: The classifier's embedding width (512).
        lr: Learning rate of the classifier (0.01); the backbone's is ``lr * backbone_lr_scale``.
        backbone_lr_scale: 0.1, as the official code.
        normalization: Gradient normalisation of MOML's MGDA (``"l2"``).
        backbone_kwargs: Extra arguments of the backbone builder.
        backbone_checkpoint: Local weights of the backbone, loaded when ``fit`` starts.

    Raises:
        ValueError: If an argument is out of range or names an unknown method.

    Examples:
        >>> task = MinimaxEntropyAdaptation("small_cnn", 3, method="moml", hidden_dim=8,
        ...                                 backbone_kwargs={"in_channels": 1, "width": 4})
        >>> x = lambda: torch.randn(4, 1, 8, 8)
        >>> batch = {"source": x(), "source_label": torch.tensor([0, 1, 2, 0]), "target": x(),
        ...          "target_label": torch.tensor([1, 2, 0, 1]), "target_unlabeled": x()}
        >>> out = task.moml_losses(batch)
        >>> out["weights"].shape, round(out["weights"].sum().item(), 4)
        (torch.Size([3]), 1.0)
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int = 10,
        method: str = "mme",
        lamda: float = 0.1,
        temperature: float = 0.05,
        hidden_dim: int = 512,
        lr: float = 0.01,
        backbone_lr_scale: float = 0.1,
        normalization: str = "l2",
        backbone_kwargs: dict[str, Any] | None = None,
        backbone_checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, 2)
        check_choice_list("method", method, ("source_target", "mme", "moml"))
        check_choice_list("normalization", normalization, NORMALIZATIONS)
        check_number("lamda", lamda, 0.0)
        for name, value in (("lr", lr), ("backbone_lr_scale", backbone_lr_scale), ("temperature", temperature)):
            check_number(name, value, 0.0, low_open=True)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net = MMENet(backbone, num_classes, hidden_dim, temperature, backbone_kwargs)
        for stage in ("val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro"))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def backbone_module(self) -> torch.nn.Module:
        return self.net.backbone

    def _check(self, batch: Any) -> None:
        if not isinstance(batch, dict) or not set(_KEYS) <= set(batch):
            got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise ValueError(f"`batch` must be a dict with {list(_KEYS)}, got {got}.")

    def _rates(self) -> dict[str, float]:
        """The current learning rate of every parameter (its optimizer group's)."""
        hp = self.hparams
        if self._trainer is not None and self.trainer.optimizers:
            g_lr, f_lr = (group["lr"] for group in self.trainer.optimizers[0].param_groups)
        else:
            g_lr, f_lr = hp.lr * hp.backbone_lr_scale, hp.lr
        return {n: g_lr if n.startswith("backbone.") else f_lr for n, _ in self.net.named_parameters()}

    def moml_losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The three objectives (source CE and labelled-target CE at the look-ahead parameters, the
        entropy term at the current ones), their MGDA weights and the combined loss."""
        self._check(batch)
        hp = self.hparams
        params = dict(self.net.named_parameters())
        entropy = adversarial_entropy(self.net(batch["target_unlabeled"], reverse=True), hp.lamda)

        def lower(p: dict[str, Tensor]) -> Tensor:
            return adversarial_entropy(functional_forward(self.net, p, batch["target_unlabeled"], True), hp.lamda)

        fast = unrolled_parameters(params, lower, self._rates())
        source = F.cross_entropy(functional_forward(self.net, fast, batch["source"]), batch["source_label"])
        target = F.cross_entropy(functional_forward(self.net, fast, batch["target"]), batch["target_label"])
        objectives = torch.stack([source, target, entropy])
        grads = hypergradients(list(objectives), list(params.values()), retain_graph=True)  # (3, d)
        weights = min_norm_weights(grads, hp.normalization, losses=objectives.detach())
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            weights = trainer.strategy.reduce(weights, reduce_op="mean")
        scales = gradient_normalizers(grads, objectives.detach(), hp.normalization).to(grads.dtype)
        min_norm = min_norm_direction(grads / scales[:, None], weights.to(grads.dtype)).norm()
        loss = (weights.detach().to(objectives.dtype) * objectives).sum()
        return {"loss": loss, "source": source, "target": target, "entropy": entropy, "weights": weights,
                "min_norm": min_norm}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._check(batch)
        hp = self.hparams
        opt = self.optimizers()
        log: dict[str, Tensor] = {}
        if hp.method == "moml":
            out = self.moml_losses(batch)
            opt.zero_grad()
            self.manual_backward(out["loss"])
            opt.step()
            log = {k: out[k] for k in ("source", "target", "entropy", "min_norm")}
            for i, name in enumerate(("source", "target", "entropy")):
                log[f"mgda_weight_{name}"] = out["weights"][i]
            loss = out["loss"]
        else:
            x = torch.cat([batch["source"], batch["target"]])
            y = torch.cat([batch["source_label"], batch["target_label"]])
            loss = F.cross_entropy(self.net(x), y)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            if hp.method == "mme":  # the second, adversarial step on the unlabelled target
                entropy = adversarial_entropy(self.net(batch["target_unlabeled"], reverse=True), hp.lamda)
                opt.zero_grad()
                self.manual_backward(entropy)
                opt.step()
                log["entropy"] = entropy
        self.lr_schedulers().step()
        size = len(batch["source_label"])
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=size)
        for key, value in log.items():
            self.log(f"train/{key}", value.detach(), batch_size=size)
        return loss.detach()

    def _eval(self, batch: Any, stage: str) -> None:
        getattr(self, f"{stage}_acc").update(self.net(batch[0]), batch[1])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self.log("val/acc", self.val_acc.compute(), prog_bar=True)
        self.val_acc.reset()

    def on_test_epoch_end(self) -> None:
        self.log("test/acc", self.test_acc.compute())
        self.test_acc.reset()

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups = [{"params": self.net.backbone_parameters(), "lr": hp.lr * hp.backbone_lr_scale},
                  {"params": self.net.classifier_parameters(), "lr": hp.lr}]
        opt = torch.optim.SGD(groups, lr=hp.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: (1 + 1e-4 * step) ** -0.75)
        return [opt], [{"scheduler": schedule, "interval": "step"}]

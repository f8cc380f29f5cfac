"""Count the multiply-accumulates (MACs) of convolutions and linear layers, dense and masked.

One forward pass with hooks on every ``nn.Conv1d``, ``nn.Conv2d``, ``nn.Conv3d``, their
transposed versions and ``nn.Linear``: a layer's dense MACs are ``output elements *
(in_channels / groups) * kernel volume`` (``input elements * (out_channels / groups) * kernel
volume`` for a transposed convolution, ``output elements * in_features`` for a linear layer),
counted for the whole input batch and for every call of a layer. A masked layer costs its dense MACs times the density of its
weight mask, the usual estimate of the sparse-training literature (e.g. RigL, Evci et al. 2020,
"Rigging the Lottery: Making All Tickets Winners", arXiv:1911.11134).

Not counted: biases, normalisation, activations, pooling and any other layer type (they are a
small share of the cost of the networks here). One MAC is one multiply and one add: multiply by
two for floating-point operations.

Torch only: this module never imports Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["FlopCount", "conv_linear_flops"]

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, *_TRANSPOSED)


@dataclass(frozen=True)
class FlopCount:
    """Dense and mask-aware MACs of one forward pass.

    Attributes:
        dense: MACs of the dense network.
        sparse: MACs with every masked layer scaled by its weight density.
        layers: Module name -> ``(dense MACs, weight density)`` of each counted layer.
    """

    dense: int
    sparse: float
    layers: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """``sparse / dense`` (1 for a network without MACs)."""
        return self.sparse / self.dense if self.dense else 1.0


def _layer_macs(module: nn.Module, inputs: tuple, output: Tensor) -> int:
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    kernel = 1
    for k in module.kernel_size:
        kernel *= k
    if isinstance(module, _TRANSPOSED):  # every input element scatters into out_channels / groups kernels
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    return output.numel() * (module.in_channels // module.groups) * kernel


@torch.no_grad()
def conv_linear_flops(
    module: nn.Module, example_input: Tensor | tuple, masks: Mapping[str, Tensor] | None = None
) -> FlopCount:
    """Count the dense and masked MACs of ``module`` on ``example_input``.

    Runs one forward pass in eval mode (no batch-norm statistics change) and restores the
    previous mode.

    Args:
        module: The network (any ``nn.Module``; a LightningModule works as well).
        example_input: The forward argument, or a tuple of positional arguments. MACs are
            counted for the whole batch: pass a batch of one for a per-sample count.
        masks: Qualified weight name (as in ``module.named_parameters()``, e.g. the keys of the
            DST callback's ``masks`` when ``module`` is the LightningModule) -> mask of that
            weight's shape or any shape (element or kernel level); its share of nonzeros is the
            layer's density. Layers without a mask are dense.

    Returns:
        A :class:`FlopCount`.

    Raises:
        ValueError: If a key of ``masks`` is not the weight of a counted layer.

    Examples:
        >>> net = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(40, 5))
        >>> count = conv_linear_flops(net, torch.randn(1, 2, 10))
        >>> count.dense  # 10 positions * 4 out * 2 in * 3 taps + 40 * 5
        440
        >>> mask = torch.rand(4, 2, 3) < 0.5
        >>> mask[:] = False; mask[:2] = True  # density 0.5
        >>> conv_linear_flops(net, torch.randn(1, 2, 10), {"0.weight": mask}).sparse
        320.0
        >>> conv_linear_flops(nn.ConvTranspose3d(2, 3, 2, stride=2), torch.randn(1, 2, 4, 4, 4)).dense  # 128 * 3 * 8
        3072
    """
    counted = {name: m for name, m in module.named_modules() if isinstance(m, _COUNTED)}
    weights = {(f"{name}.weight" if name else "weight"): name for name in counted}
    masks = dict(masks or {})
    unknown = sorted(set(masks) - set(weights))
    if unknown:
        raise ValueError(
            f"`masks` must be keyed by the weight names of Conv1d/2d/3d, ConvTranspose or Linear layers, such as "
            f"{sorted(weights)[:4]}; got unknown names {unknown}."
        )
    density = {weights[n]: float(torch.count_nonzero(m)) / max(m.numel(), 1) for n, m in masks.items()}
    dense: dict[str, int] = {name: 0 for name in counted}

    def hook(name: str):
        def count(mod: nn.Module, args: tuple, output: Tensor) -> None:
            dense[name] += _layer_macs(mod, args, output)

        return count

    handles = [m.register_forward_hook(hook(name)) for name, m in counted.items()]
    was_training = module.training
    module.eval()
    try:
        args = example_input if isinstance(example_input, tuple) else (example_input,)
        module(*args)
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    layers = {name: (macs, density.get(name, 1.0)) for name, macs in dense.items()}
    return FlopCount(
        dense=sum(dense.values()),
        sparse=sum(macs * d for macs, d in layers.values()),
        layers=layers,
    )

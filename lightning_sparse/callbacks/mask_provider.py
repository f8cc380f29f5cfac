"""The mask-provider protocol: what a component that executes sparse layers asks of whoever
owns the masks.

Every mask-holding callback (:class:`~lightning_sparse.callbacks.SparseMaskCallback` and its
subclasses: dynamic sparse training, pruning, ...) satisfies it; :class:`TrulySparse` talks to
any object that does, never to a concrete class. Structural typing: a user's own callback needs
no base class, only these members.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["MaskProvider", "mask_providers"]


@runtime_checkable
class MaskProvider(Protocol):
    """Owns bool masks of some parameters and can hand parameters over for a while.

    Members:
        sparse_names: qualified names of the parameters it keeps sparse.
        masks: name -> parameter-shaped bool mask (empty before training starts).
        dense_gradients_every_step: ``True`` when it reads the dense gradient at every optimizer
            step (growth by gradient momentum): its parameters cannot be held truly sparse.
        needs_dense_gradients(trainer, next_batch=False): whether the optimizer step(s) of the
            current training batch (or of the next one) may change the masks, so held parameters
            must be back in dense form for that batch's accumulation window.
        hold(names) / release(names): hand parameters over to another component (which keeps
            their non-zeros on the masks and trains them as masked parameters would be trained)
            and take them back; while held the provider leaves them alone.
    """

    @property
    def sparse_names(self) -> frozenset[str]: ...

    @property
    def masks(self) -> dict[str, Tensor]: ...

    @property
    def dense_gradients_every_step(self) -> bool: ...

    def needs_dense_gradients(self, trainer: Any, next_batch: bool = False) -> bool: ...

    def hold(self, names: Sequence[str]) -> None: ...

    def release(self, names: Sequence[str]) -> None: ...


def mask_providers(callbacks: Sequence[Any]) -> list[MaskProvider]:
    """The callbacks of a Trainer that provide masks, in order.

    Examples:
        >>> from lightning_sparse.callbacks import DynamicSparseTraining, TrulySparse
        >>> [type(c).__name__ for c in mask_providers([TrulySparse(), DynamicSparseTraining()])]
        ['DynamicSparseTraining']
    """
    return [c for c in callbacks if isinstance(c, MaskProvider)]

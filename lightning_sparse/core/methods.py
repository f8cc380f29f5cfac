"""Dynamic-sparse-training methods as frozen presets: a new method is one :func:`register_method`.

A preset says which prune and grow scores a method uses, how much it replaces at each update and
for how long, and whether it also prunes gradually towards the target sparsity. The callback
(:class:`~lightning_sparse.callbacks.DynamicSparseTraining`) reads the preset for its defaults;
every value can still be overridden by the callback's arguments.

- ``static``: a random sparse network, never changed (the "random pruning" baseline; Liu et al.
  2022, "The Unreasonable Effectiveness of Random Pruning", arXiv:2202.02643).
- ``set``: SET, Mocanu et al. 2018, arXiv:1707.04780: drop the smallest positive and largest
  negative weights (30%), regrow at random, until the end of training.
- ``rigl``: RigL, Evci et al. 2020, arXiv:1911.11134: drop by magnitude, grow by the dense
  gradient; drop fraction 0.3 cosine-decayed to 0; updates stop at 75% of training.
- ``mest``: MEST, Yuan et al. 2021, arXiv:2110.14032: drop by ``|w| + lambda |g|``, regrow at
  random.
- ``granet``: GraNet, Liu et al. 2021, arXiv:2106.10404: gradual (cubic) global magnitude
  pruning from ``initial_sparsity`` to ``sparsity``, and at every update a (cosine-decayed,
  0.5) fraction dropped by magnitude and regrown by gradient.
- ``dsff``: E2ENet's dynamic sparse feature fusion, Wu et al. 2024, arXiv:2312.04727, with the
  official code's defaults (``sparselearning/core.py``: ``--death magnitude``, ``--growth
  random``, ``--death-rate 0.5``, ``--decay-schedule cosine``, ``--density 0.2``,
  ``--update_frequency 1200``, ERK): drop by magnitude, regrow at random, a 0.5 fraction
  cosine-decayed over the whole run. Used at ``granularity="kernel"`` on E2ENet's fusion
  convolutions (``include=E2ENET_FUSION_INCLUDE``, ``sparsity=0.8``, ``update_interval=1200``).
- ``slak``: SLaK's sparse training, Liu et al. 2023, arXiv:2207.03620 ("use sparse groups, expand
  more width"): magnitude prune, random regrow, a 0.5 fraction (SLaK-T; 0.3 for S/B:
  ``drop_fraction=0.3``) cosine-decayed over the run; with ``distribution="snip"`` (SLaK's
  ``--sparse_init snip``), ``sparsity=0.4`` on every convolution and linear weight and an update
  every 2000 (T) / 100 (S/B) steps. Layers SNIP leaves dense keep an all-ones mask that no update
  changes (the official code leaves them unmasked).
- ``gmp``: gradual magnitude pruning, Zhu & Gupta 2017, "To prune, or not to prune: exploring
  the efficacy of pruning for model compression", arXiv:1710.01878: dense at ``start_step``, then
  the cubic schedule ``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_e - t_0))^3`` down to the target
  at ``prune_end_step`` by magnitude (global or per layer), no regrowth.

Torch only (here: pure Python): never imports Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass

from .criteria import GROW_CRITERIA, PRUNE_CRITERIA
from .schedules import SCHEDULES

__all__ = ["METHOD_PRESETS", "MethodPreset", "register_method"]


@dataclass(frozen=True)
class MethodPreset:
    """The defaults of one dynamic-sparse-training method.

    Attributes:
        name: the ``method`` string users pass.
        prune: prune score (:data:`~lightning_sparse.core.criteria.PRUNE_CRITERIA`), ``None`` for
            a method that never changes the topology.
        grow: grow score (:data:`~lightning_sparse.core.criteria.GROW_CRITERIA`) or ``None``.
        drop_fraction: share of each layer's active units replaced at an update.
        drop_schedule: decay of the drop fraction over the update window.
        stop: end of the update window as a share of training.
        gradual: also prune gradually (cubic schedule) from an initial to the target sparsity.
        initial_sparsity_above_half: the gradual start when the target is above 0.5 (GraNet: 0.5;
            a lower target starts dense).
    """

    name: str
    prune: str | None
    grow: str | None
    drop_fraction: float = 0.0
    drop_schedule: str = "constant"
    stop: float = 1.0
    gradual: bool = False
    initial_sparsity_above_half: float = 0.5

    def __post_init__(self) -> None:
        if self.prune is not None and self.prune not in PRUNE_CRITERIA:
            raise ValueError(f"`prune` must be one of {PRUNE_CRITERIA} or None, got {self.prune!r}.")
        if self.grow is not None and self.grow not in GROW_CRITERIA:
            raise ValueError(f"`grow` must be one of {GROW_CRITERIA} or None, got {self.grow!r}.")
        if self.drop_schedule not in SCHEDULES:
            raise ValueError(f"`drop_schedule` must be one of {SCHEDULES}, got {self.drop_schedule!r}.")

    @property
    def changes_topology(self) -> bool:
        """Whether the method ever updates the masks after the first draw."""
        return self.prune is not None

    def default_initial_sparsity(self, sparsity: float) -> float:
        """Where the masks start: the target, or for a gradual method a denser start."""
        if not self.gradual:
            return sparsity
        return self.initial_sparsity_above_half if sparsity > self.initial_sparsity_above_half else 0.0


METHOD_PRESETS: dict[str, MethodPreset] = {}


def register_method(preset: MethodPreset) -> MethodPreset:
    """Add (or replace) a method preset; returns it.

    Examples:
        >>> p = register_method(MethodPreset("set_long", "set", "random", 0.3, "constant", 1.0))
        >>> METHOD_PRESETS["set_long"].prune
        'set'
        >>> del METHOD_PRESETS["set_long"]
    """
    METHOD_PRESETS[preset.name] = preset
    return preset


register_method(MethodPreset("static", None, None))
register_method(MethodPreset("set", "set", "random", 0.3, "constant", 1.0))
register_method(MethodPreset("rigl", "magnitude", "gradient", 0.3, "cosine", 0.75))
register_method(MethodPreset("mest", "mest", "random", 0.3, "cosine", 0.75))
register_method(MethodPreset("granet", "magnitude", "gradient", 0.5, "cosine", 0.75, gradual=True))
register_method(MethodPreset("dsff", "magnitude", "random", 0.5, "cosine", 1.0))
register_method(MethodPreset("slak", "magnitude", "random", 0.5, "cosine", 1.0))
register_method(MethodPreset("gmp", "magnitude", None, 0.0, "constant", 0.0, gradual=True,
                             initial_sparsity_above_half=0.0))

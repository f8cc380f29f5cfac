"""Optimizer-state surgery: reset every parameter-shaped state tensor at changed positions.

Works for any ``torch.optim.Optimizer`` whose per-parameter state holds tensors shaped like the
parameter (SGD ``momentum_buffer``; Adam/AdamW ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``;
RMSprop, Adagrad, Adamax, NAdam, RAdam, ...). Scalars (``step``) and factored states are left
alone. Adagrad's ``sum`` is reset to its ``initial_accumulator_value``, every other tensor to 0.

Torch only: this module never imports Lightning.
"""

from __future__ import annotations

import torch
from torch import Tensor

# optimizer state entries whose untouched value is not zero (Adagrad's accumulator)
_FRESH_VALUE_KEYS = {"sum": "initial_accumulator_value"}


def fresh_state_value(key: str, group: dict | None) -> float:
    """The value a state entry ``key`` has before any step: Adagrad's ``sum`` starts at the
    group's ``initial_accumulator_value``, every other entry at 0.

    Examples:
        >>> fresh_state_value("sum", {"initial_accumulator_value": 0.1}), fresh_state_value("exp_avg", {})
        (0.1, 0.0)
    """
    return float((group or {}).get(_FRESH_VALUE_KEYS[key], 0.0)) if key in _FRESH_VALUE_KEYS else 0.0


@torch.no_grad()
def reset_optimizer_state(optimizer: torch.optim.Optimizer, param: Tensor, changed: Tensor) -> list[str]:
    """Reset ``optimizer``'s state for ``param`` where ``changed`` (bool, param-shaped) is true.

    Returns:
        The names of the state entries that were reset.

    Examples:
        >>> p = torch.nn.Parameter(torch.ones(3))
        >>> opt = torch.optim.Adam([p]); p.grad = torch.ones(3); opt.step()
        >>> reset_optimizer_state(opt, p, torch.tensor([True, False, False]))
        ['exp_avg', 'exp_avg_sq']
        >>> opt.state[p]["exp_avg"].tolist()
        [0.0, 0.10000000149011612, 0.10000000149011612]
    """
    state = optimizer.state.get(param)
    if not state:
        return []
    group = next((g for g in optimizer.param_groups if any(q is param for q in g["params"])), {})
    reset = []
    for key, value in state.items():
        if torch.is_tensor(value) and value.dim() > 0 and value.shape == param.shape:
            value.masked_fill_(changed.to(value.device), fresh_state_value(key, group))
            reset.append(key)
    return reset

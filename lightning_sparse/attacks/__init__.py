"""Adversarial attacks as plain torch functions (never imports Lightning).

:func:`pgd` is the L-inf projected-gradient attack of Madry et al. 2018 (arXiv:1706.06083), used
for adversarial training and robust-accuracy evaluation by
:mod:`lightning_sparse.callbacks.adversarial`.
"""

from lightning_sparse.attacks.pgd import as_channel_stats, pgd

__all__ = ["as_channel_stats", "pgd"]

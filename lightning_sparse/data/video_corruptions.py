"""The video corruptions, also importable from here: see :mod:`lightning_sparse.data.video.corruptions`."""

from lightning_sparse.data.video import corruptions as _module
from lightning_sparse.data.video.corruptions import *  # noqa: F403

__all__ = list(_module.__all__)

"""``Corrupt``: a torchvision-style transform around :func:`corrupt`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from ._corrupt import check_name, check_params, check_severity, corrupt

__all__ = ["Corrupt"]

_MAX_SEED = 2**63 - 1


def _check_index(index: object) -> int:
    if isinstance(index, torch.Tensor) and index.numel() == 1:
        index = index.item()
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"`index` must be None or a non-negative integer; got {index!r}.")
    return int(index)


class Corrupt:
    """Corrupt an image with one common corruption at a fixed severity (a dataset transform).

    Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common Corruptions
    and Perturbations" (ICLR, arXiv:1903.12261). Wraps :func:`corrupt` for use in a
    ``torchvision.transforms.Compose`` pipeline, before ``ToTensor``/``Normalize``.

    Accepted inputs, returned as the same kind and layout:

    * PIL images in mode ``"RGB"`` or ``"L"``;
    * ``uint8`` numpy arrays ``(H, W, C)`` or ``(H, W)``;
    * ``uint8`` tensors ``(H, W, C)``, ``(H, W)`` or torchvision's ``(C, H, W)`` (``C`` in
      {1, 3}; images are at least 8x8, so the layout is never ambiguous).

    Determinism: every call corrupts with its own seed, chosen as follows.

    * ``seed=None``: drawn from torch's global generator, like torchvision's random
      transforms; ``torch.manual_seed``/``lightning.seed_everything`` and the DataLoader's
      per-worker seeding make runs reproducible and workers distinct.
    * ``seed=s`` and ``transform(image, index=i)``: :meth:`item_seed` ``(i)``, a pure function
      of ``(s, i)``. The same item always gets the same corruption, whatever the call order,
      shuffling or number of workers: a fixed corrupted test set like CIFAR-10-C.
      :class:`CorruptedDataset` passes the index for you.
    * ``seed=s`` without an index: the ``k``-th call in a process gets a seed derived from
      ``(s, worker id, k)``, so the sequence is reproducible for a fixed call order.

    Args:
        name: A corruption in ``ALL_CORRUPTIONS``.
        severity: 1 to 5.
        seed: ``None`` or a non-negative integer, see above.
        params: ``"cifar"``, ``"imagenet"`` or ``None`` (by image size), as in :func:`corrupt`.

    Raises:
        ValueError: If an argument is not one of the allowed values (at construction), or an
            image is of an unsupported kind, dtype or shape (at call).

    Examples:
        >>> from PIL import Image
        >>> transform = Corrupt("fog", severity=3, seed=0)
        >>> image = Image.new("RGB", (32, 32), (120, 60, 30))
        >>> out = transform(image, index=7)
        >>> out.size, out.mode
        ((32, 32), 'RGB')
        >>> out == transform(image, index=7)
        True
    """

    def __init__(self, name: str, severity: int, seed: int | None = None,
                 params: str | None = None) -> None:
        self.name = check_name(name)
        self.severity = check_severity(severity)
        self.params = check_params(params)
        if seed is not None and (isinstance(seed, (bool, np.bool_))
                                 or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"`seed` must be None or a non-negative integer; got {seed!r}.")
        self.seed = None if seed is None else int(seed)
        self._calls = 0

    def item_seed(self, index: int) -> int:
        """The seed used for item ``index`` when the transform has an integer ``seed``.

        ``transform(image, index=i)`` equals
        ``corrupt(image, name, severity, seed=transform.item_seed(i), params=params)``.
        """
        if self.seed is None:
            raise ValueError("`seed` is None: per-item seeds need an integer `seed`.")
        return self._derive(0, _check_index(index))

    def _derive(self, *words: int) -> int:
        state = np.random.SeedSequence([self.seed, *words]).generate_state(2, np.uint32)
        return (int(state[0]) << 31) ^ int(state[1])

    def _call_seed(self, index: object) -> int:
        if self.seed is None:
            return int(torch.randint(0, _MAX_SEED, (), dtype=torch.int64))
        if index is not None:
            return self.item_seed(index)  # type: ignore[arg-type]
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        self._calls += 1
        return self._derive(1, worker, self._calls - 1)  # tag 1 keeps it apart from item seeds

    def __call__(self, image: Any, index: int | None = None) -> Any:
        """Corrupt ``image``; ``index`` (optional) selects the per-item seed."""
        if index is not None:
            index = _check_index(index)
        seed = self._call_seed(index)
        if isinstance(image, Image.Image):
            if image.mode not in ("RGB", "L"):
                raise ValueError(
                    f"PIL images must have mode 'RGB' or 'L'; got mode {image.mode!r} "
                    "(convert it first, e.g. image.convert('RGB'))."
                )
            out = corrupt(np.asarray(image), self.name, self.severity, seed, self.params)
            return Image.fromarray(out, mode=image.mode)
        if isinstance(image, torch.Tensor):
            return self._tensor(image, seed)
        return corrupt(image, self.name, self.severity, seed, self.params)

    def _tensor(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        if image.dtype != torch.uint8:
            raise ValueError(
                f"tensors must have dtype torch.uint8; got {image.dtype} (apply Corrupt before "
                "ToTensor, or use PILToTensor)."
            )
        array = image.detach().cpu().numpy()
        channels_first = array.ndim == 3 and array.shape[-1] not in (1, 3) and array.shape[0] in (1, 3)
        if channels_first:
            array = array.transpose(1, 2, 0)
        out = corrupt(np.ascontiguousarray(array), self.name, self.severity, seed, self.params)
        if channels_first:
            out = out.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(out)).to(image.device)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, severity={self.severity}, "
                f"seed={self.seed}, params={self.params!r})")

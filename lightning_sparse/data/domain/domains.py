"""Domains of unsupervised domain adaptation: the :class:`Domain` base and in-memory digit domains.

A :class:`Domain` is one data distribution over a fixed, global list of classes
(:attr:`Domain.classes`, index = global label). ``domain.dataset(split, train)`` is a torch
``Dataset`` of ``(x, global_label)`` items: ``x`` a float32 tensor ``(C, H, W)``,
``global_label`` an ``int``; ``train=True`` applies the domain's training augmentation, ``False``
its evaluation transform. Every dataset also carries ``labels``, the ``(N,)`` int64 numpy array
of its global labels, so that a class filter never has to load a sample. Constructor arguments
are plain values (strings, numbers, lists), so a LightningCLI recipe builds a domain from
``class_path`` / ``init_args``; :meth:`Domain.config` gives that form back.

The digit domains here hold their images in memory, loaded at the first ``dataset`` call:

* :class:`MNISTDomain`: MNIST digits (LeCun et al. 1998) from an ``.npz`` file (``images``
  uint8 ``(N, H, W)``, ``labels``), 28x28 handwriting;
* :class:`UCIDigitsDomain`: the UCI optical digits (Alpaydin & Kaynak 1998) shipped with
  scikit-learn (``load_digits``, 8x8, values 0-16), resized bilinearly: blurrier, blockier
  strokes, a real domain shift against MNIST.

Both scale pixels to ``[0, 1]``, resize to ``image_size`` (bilinear, antialiased) and normalise
with ``(x - 0.5) / 0.5``, one fixed scale for both (``[-1, 1]``, background ``-1``), so that
neither domain is normalised with statistics of its own. Splits: ``"all"``; ``"train"`` /
``"test"`` a stratified split seeded by ``seed`` (``test_fraction`` of each class in ``"test"``).
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from lightning_sparse._validation import check_bool, check_choice, check_int, check_number
from lightning_sparse.data.splits import stratified_take

__all__ = ["DIGIT_CLASSES", "DigitImages", "Domain", "MNISTDomain", "TensorImages", "UCIDigitsDomain",
           "build_domain"]

DIGIT_CLASSES: list[str] = [str(d) for d in range(10)]
"""The class names of the digit domains: ``"0"`` .. ``"9"``."""


def _plain(value: Any) -> Any:
    """A constructor argument as YAML-friendly data (paths as strings, tuples as lists)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


_MISSING = object()


class Domain:
    """One domain: a global class list and datasets of ``(x, global_label)`` per split.

    Subclasses set :attr:`splits` and :attr:`in_channels`, provide :attr:`classes` and
    :meth:`_dataset`, and keep every constructor argument as an attribute of the same name (what
    :meth:`config` reads, through :meth:`_argument`).

    Attributes:
        splits: The split names ``dataset`` accepts (``"all"`` at least).
        in_channels: Channels of ``x``.
    """

    splits: tuple[str, ...] = ("all",)
    in_channels: int = 3

    @property
    def classes(self) -> list[str]:
        """Global class names; the index of a name is its global label."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """``len(classes)``."""
        return len(self.classes)

    def dataset(self, split: str = "all", train: bool = False) -> Dataset:
        """Items ``(x, global_label)`` of ``split`` with the training (``train=True``) or evaluation transform.

        The dataset has ``labels``, the ``(N,)`` int64 array of its global labels.

        Raises:
            ValueError: If ``split`` is not one of :attr:`splits` or ``train`` is not a bool.
        """
        self.check_split("split", split)
        check_bool("train", train)
        return self._dataset(split, train)

    def check_split(self, name: str, split: str) -> str:
        """Raise a ``ValueError`` naming ``name`` unless ``split`` is one of :attr:`splits`."""
        return check_choice(name, split, self.splits, extra=f" (the splits of {type(self).__name__})")

    def _dataset(self, split: str, train: bool) -> Dataset:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """``{"class_path", "init_args"}`` that rebuilds this domain (see :func:`build_domain`)."""
        cls = type(self)
        names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        args = {}
        for n in names:
            value = self._argument(n)
            if value is not _MISSING:
                args[n] = _plain(value)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": args}

    def _argument(self, name: str) -> Any:
        """The constructor argument ``name`` as :meth:`config` reports it (default: the attribute of that name).

        A subclass whose attribute of that name is derived from its files (a lazily read property)
        overrides this to give the argument as passed, so that :meth:`config` and ``repr`` never
        touch the file system.
        """
        return getattr(self, name, _MISSING)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config()["init_args"].items())
        return f"{type(self).__name__}({args})"


def build_domain(name: str, value: Any) -> Domain:
    """A :class:`Domain`, or one built from a ``{"class_path", "init_args"}`` dict (:meth:`Domain.config`).

    Raises:
        ValueError: Naming ``name``, if ``value`` is neither (or its class is not a Domain).

    Examples:
        >>> build_domain("source", UCIDigitsDomain(image_size=16).config())
        UCIDigitsDomain(image_size=16, test_fraction=0.2, max_samples=None, seed=0, augment=False)
    """
    if isinstance(value, Domain):
        return value
    if isinstance(value, dict) and isinstance(value.get("class_path"), str):
        module, _, qualname = value["class_path"].rpartition(".")
        try:
            cls = getattr(importlib.import_module(module or "lightning_sparse.data.domain"), qualname)
        except (ImportError, AttributeError):
            cls = None
        if isinstance(cls, type) and issubclass(cls, Domain):
            return cls(**value.get("init_args", {}))
    raise ValueError(f"`{name}` must be a Domain (or its {{'class_path', 'init_args'}} dict), got {value!r}.")


class TensorImages(Dataset):
    """In-memory images ``(N, C, H, W)`` and global labels; item ``(augment(image), label)``."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, augment: Any = None) -> None:
        self.images = images  # (N, C, H, W) float32
        self.labels = np.asarray(labels, dtype=np.int64)  # (N,)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        if self.augment is not None:
            x = self.augment(x)
        return x, int(self.labels[i])


class RandomShift:
    """Shift an image ``(C, H, W)`` by up to ``max_shift`` pixels each way, filling with ``fill``."""

    def __init__(self, max_shift: int, fill: float) -> None:
        self.max_shift, self.fill = max_shift, fill

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.max_shift
        padded = F.pad(x, (m, m, m, m), value=self.fill)
        dy, dx = (int(v) for v in torch.randint(0, 2 * m + 1, (2,)))
        return padded[:, dy : dy + x.shape[1], dx : dx + x.shape[2]].contiguous()


class DigitImages(Domain):
    """In-memory 1-channel digit images on one scale (see the module docstring).

    Subclasses provide :meth:`load`; everything else (subset, resize, scale, splits) is here.

    Args:
        image_size: Side of the square images.
        test_fraction: Share of each class in the ``"test"`` split, in ``(0, 1)``.
        max_samples: Keep a stratified subset of this many samples (seeded), for small CPU runs;
            None (or more than there are) keeps all.
        seed: Seed of the subset and of the train/test split.
        augment: Training items (``train=True``) are shifted by up to 2 pixels each way; False:
            training and evaluation items are the same.

    Raises:
        ValueError: If an argument is out of range.
    """

    splits = ("all", "train", "test")
    in_channels = 1

    def __init__(self, image_size: int = 28, test_fraction: float = 0.2, max_samples: int | None = None,
                 seed: int = 0, augment: bool = False) -> None:
        check_int("image_size", image_size, 1)
        check_number("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
        check_int("max_samples", max_samples, len(DIGIT_CLASSES), allow_none=True)
        check_int("seed", seed, 0)
        check_bool("augment", augment)
        self.image_size, self.test_fraction, self.max_samples = image_size, test_fraction, max_samples
        self.seed, self.augment = seed, augment
        self._cache: tuple[torch.Tensor, np.ndarray, dict[str, np.ndarray]] | None = None

    @property
    def classes(self) -> list[str]:
        return list(DIGIT_CLASSES)

    def load(self) -> tuple[torch.Tensor, np.ndarray]:
        """``(images, labels)``: float32 ``(N, 1, h, w)`` in ``[0, 1]`` and int64 ``(N,)``."""
        raise NotImplementedError

    def arrays(self) -> tuple[torch.Tensor, np.ndarray, dict[str, np.ndarray]]:
        """``(images (N, 1, S, S) normalised, labels (N,), {split: positions})``, built once."""
        if self._cache is None:
            images, labels = self.load()
            rng = np.random.default_rng(self.seed)
            if self.max_samples is not None and self.max_samples < len(labels):
                keep, _ = stratified_take(labels, self.max_samples, rng)
                images, labels = images[torch.from_numpy(keep)], labels[keep]
            if images.shape[-2:] != (self.image_size, self.image_size):
                images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                       align_corners=False, antialias=True).clamp_(0.0, 1.0)
            images = ((images - 0.5) / 0.5).contiguous()
            test, train = stratified_take(labels, round(self.test_fraction * len(labels)), rng)
            splits = {"all": np.arange(len(labels)), "train": train, "test": test}
            self._cache = (images, labels, splits)
        return self._cache

    def _dataset(self, split: str, train: bool) -> Dataset:
        images, labels, splits = self.arrays()
        idx = splits[split]
        augment = RandomShift(2, -1.0) if train and self.augment else None
        return TensorImages(images[torch.from_numpy(idx)], labels[idx], augment)

    def __getstate__(self) -> dict[str, Any]:  # pickles and deep copies carry the arguments, not the pixels
        return {**self.__dict__, "_cache": None}


class MNISTDomain(DigitImages):
    """MNIST digits from an ``.npz`` file with ``images`` uint8 ``(N, H, W)`` and ``labels`` ``(N,)``.

    Args:
        mnist_path: The ``.npz`` file (the audio-visual digits' argument name, resolved against a
            recipe's folder by the CLI).
        image_size: Side of the square images (28).
        test_fraction: Share of each class in the ``"test"`` split.
        max_samples: Size of a stratified, seeded subset (None: all).
        seed: Seed of the subset and of the split.
        augment: Shift training items by up to 2 pixels (see :class:`DigitImages`).

    Raises:
        ValueError: If an argument is out of range, or (at the first ``dataset`` call) the file
            lacks ``images`` / ``labels``.
        FileNotFoundError: If ``mnist_path`` is not a file.
    """

    def __init__(self, mnist_path: str, image_size: int = 28, test_fraction: float = 0.2,
                 max_samples: int | None = None, seed: int = 0, augment: bool = False) -> None:
        if not isinstance(mnist_path, (str, os.PathLike)) or not str(mnist_path):
            raise ValueError(f"`mnist_path` must be the path of an .npz file, got {mnist_path!r}.")
        super().__init__(image_size, test_fraction, max_samples, seed, augment)
        self.mnist_path = str(mnist_path)
        if not Path(self.mnist_path).expanduser().is_file():
            raise FileNotFoundError(f"`mnist_path` must be an .npz file with 'images' and 'labels', got {self.mnist_path!r} "
                                    "(no such file).")

    def load(self) -> tuple[torch.Tensor, np.ndarray]:
        from lightning_sparse.data.avsr.av_digits import read_mnist_npz

        images, labels = read_mnist_npz(Path(self.mnist_path).expanduser())
        if labels.min() < 0 or labels.max() > 9:
            raise ValueError(f"{self.mnist_path}: 'labels' must be digits 0-9, got values {labels.min()}..{labels.max()}.")
        return torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1), labels


class UCIDigitsDomain(DigitImages):
    """The UCI optical digits of scikit-learn (1797 images, 8x8, values 0-16), resized bilinearly.

    Args:
        image_size: Side of the square images (28).
        test_fraction: Share of each class in the ``"test"`` split.
        max_samples: Size of a stratified, seeded subset (None: all).
        seed: Seed of the subset and of the split.
        augment: Shift training items by up to 2 pixels (see :class:`DigitImages`).

    Examples:
        >>> domain = UCIDigitsDomain(image_size=16)
        >>> ds = domain.dataset("train", train=True)
        >>> x, y = ds[0]
        >>> len(ds), tuple(x.shape), domain.classes[y], float(x.min()) >= -1.0
        (1438, (1, 16, 16), '1', True)
        >>> domain.dataset("validation")
        Traceback (most recent call last):
        ...
        ValueError: `split` must be one of ('all', 'train', 'test') (the splits of UCIDigitsDomain), got 'validation'.
    """

    def __init__(self, image_size: int = 28, test_fraction: float = 0.2, max_samples: int | None = None,
                 seed: int = 0, augment: bool = False) -> None:
        super().__init__(image_size, test_fraction, max_samples, seed, augment)

    def load(self) -> tuple[torch.Tensor, np.ndarray]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images).to(torch.float32).div_(16.0).unsqueeze(1)
        return images, digits.target.astype(np.int64)

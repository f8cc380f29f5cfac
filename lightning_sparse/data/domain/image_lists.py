"""Image domains read from files: the shared reader base, its transforms, and image lists.

:class:`ImageFileDomain` is the base of every image reader (:class:`ImageListDomain` here;
Office-31, Office-Home, VisDA-2017 and DomainNet in :mod:`~lightning_sparse.data.domain.readers`).
Construction checks the argument values only and touches no file; the files are indexed once, at
the first call that needs them, and cached. Images are decoded lazily, one per item
(:class:`~lightning_sparse.data.image.datasets.FileImages`: ``uint8`` RGB, torchvision's decoder
with a PIL fallback). Items are ``(x, global_label)``, ``x`` float32 ``(3, image_size,
image_size)`` normalised with ImageNet's mean and std. Nothing is downloaded.

Transforms (``transform``), with ``Resize`` to a ``resize_size`` square as the UDA code bases do
(TLlib's ``ResizeImage``, also DANN / CDAN / PADA):

* ``"imagenet"``: training ``Resize((resize_size, resize_size))`` + ``RandomCrop(image_size)`` +
  horizontal flip; evaluation ``Resize((resize_size, resize_size))`` + ``CenterCrop(image_size)``;
* ``"imagenet_rrc"``: training ``Resize`` as above + ``RandomResizedCrop(image_size)`` + flip
  (TLlib's default); evaluation as ``"imagenet"``.

Image lists (:class:`ImageListDomain`): lines ``relative/path/to/image.jpg <label>``, paths
relative to ``root``, blank lines skipped; the format of the UDA code bases' list files.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from torchvision.transforms import v2

from lightning_sparse._validation import check_choice, check_int
from lightning_sparse.data.domain.domains import Domain
from lightning_sparse.data.image.datasets import FileImages
from lightning_sparse.data.image.files import FileSource, scan_classes
from lightning_sparse.data.image.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_transform
__all__ = ["TRANSFORMS", "ImageFileDomain", "ImageListDomain", "image_transform", "read_image_list"]

TRANSFORMS: tuple[str, ...] = ("imagenet", "imagenet_rrc")
"""The transform presets of the image readers (see the module docstring)."""


def image_transform(transform: str = "imagenet", image_size: int = 224, resize_size: int = 256,
                    train: bool = False) -> v2.Compose:
    """The training or evaluation pipeline of a preset in :data:`TRANSFORMS` (``uint8`` image -> float32).

    Examples:
        >>> image_transform("imagenet", 8, 10, train=True)(np.zeros((30, 20, 3), np.uint8)).shape
        torch.Size([3, 8, 8])
    """
    check_choice("transform", transform, TRANSFORMS)
    check_int("image_size", image_size, 1)
    check_int("resize_size", resize_size, image_size)
    steps = [v2.ToImage(), v2.Resize((resize_size, resize_size), antialias=True)]
    if not train:
        steps.append(v2.CenterCrop(image_size))
    elif transform == "imagenet":
        steps += [v2.RandomCrop(image_size), v2.RandomHorizontalFlip()]
    else:
        steps += [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    return v2.Compose([*steps, normalize_transform(IMAGENET_MEAN, IMAGENET_STD)])


def read_image_list(path: str | os.PathLike, num_classes: int | None = None) -> tuple[list[str], np.ndarray]:
    """``(files, labels)`` of an image list: lines ``<relative path> <label>`` (blank lines skipped).

    The label is the last field, so paths may hold spaces.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If a line is malformed, a label negative or ``>= num_classes``, or the list
            empty (naming the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image list {path} does not exist.")
    files, labels = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(maxsplit=1)
            label = parts[1] if len(parts) == 2 else ""
            if not label.lstrip("-").isdigit():
                raise ValueError(f"{path}, line {number}: expected `<relative/path/to/image> <integer label>`, "
                                 f"got {line!r}.")
            value = int(label)
            if value < 0 or (num_classes is not None and value >= num_classes):
                allowed = "a label >= 0" if num_classes is None else f"a label in 0..{num_classes - 1}"
                raise ValueError(f"{path}, line {number}: expected {allowed}, got {value} in {line!r}.")
            files.append(parts[0].replace(os.sep, "/"))
            labels.append(value)
    if not files:
        raise ValueError(f"Image list {path} holds no images.")
    return files, np.asarray(labels, dtype=np.int64)


def _check_root(root: str | os.PathLike) -> Path:
    if not isinstance(root, (str, os.PathLike)) or not str(root):
        raise ValueError(f"`root` must be a folder path, got {root!r}.")
    return Path(root).expanduser()


def _first_exists(source: FileSource, files: list[str], what: str) -> None:
    """A cheap check of the root: the first listed image must exist (the others are read lazily)."""
    if not source.exists(files[0]):
        raise FileNotFoundError(f"{what}: image {source.path / files[0]} does not exist (is `root` right?).")


def _scan(folder: Path, classes: Sequence[str], what: str) -> tuple[list[str], np.ndarray]:
    """Files and labels of ``folder/<class>/**/<image>``; class folders must be among ``classes``."""
    tree = scan_classes(FileSource(folder))
    unknown = sorted(set(tree) - set(classes))
    if unknown:
        raise ValueError(f"{what}: class folders in {folder} that are not classes of the data set: {unknown[:5]}.")
    if not tree:
        raise FileNotFoundError(f"{what}: no images in class folders `{folder}/<class>/<image>`.")
    missing = [c for c in classes if c not in tree]
    if missing:
        warnings.warn(f"{what}: {len(missing)} of {len(classes)} classes have no images in {folder} "
                      f"(e.g. {missing[:3]}).", stacklevel=2)
    index = {c: k for k, c in enumerate(classes)}
    files = [f for c in tree for f in tree[c]]
    labels = np.asarray([index[c] for c in tree for _ in tree[c]], dtype=np.int64)
    return files, labels


Entries = dict[str, tuple[FileSource, list[str], np.ndarray]]
"""``{split: (FileSource, files, labels)}``: what a reader's index holds."""


class ImageFileDomain(Domain):
    """Base of the readers: image files indexed lazily (once), decoded lazily, one transform preset.

    Construction checks the argument values only. The files are indexed by :meth:`_read` at the
    first call that needs them (:meth:`dataset`, :meth:`entries`, and :attr:`classes` when the
    class list is not a constant), once: the index is cached in ``_cache`` (not pickled or deep
    copied, like :class:`~lightning_sparse.data.domain.domains.DigitImages`' pixels; a copy
    indexes again when it needs the files). A failed index is not cached: the next call raises
    again.

    Subclasses implement :meth:`_read` and pass ``classes`` when their class list is a constant.

    Args:
        image_size: Side of the output images.
        resize_size: Side of the square the image is resized to before cropping (``>= image_size``).
        transform: A preset in :data:`TRANSFORMS`.
        classes: The class list when it is known without the files; None: it comes from
            :meth:`_read`.

    Raises:
        ValueError: If an argument is out of range.
    """

    in_channels = 3

    def __init__(self, image_size: int = 224, resize_size: int = 256, transform: str = "imagenet",
                 classes: Sequence[str] | None = None) -> None:
        check_int("image_size", image_size, 1)
        check_int("resize_size", resize_size, image_size)
        check_choice("transform", transform, TRANSFORMS)
        self.image_size, self.resize_size, self.transform = image_size, resize_size, transform
        self._fixed_classes: list[str] | None = None if classes is None else list(classes)
        self._cache: tuple[list[str], Entries] | None = None

    @property
    def classes(self) -> list[str]:
        """Global class names; a constant, or (DomainNet, image lists without ``classes``) read from the files."""
        if self._fixed_classes is not None:
            return list(self._fixed_classes)
        return list(self._index()[0])

    def entries(self) -> Entries:
        """``{split: (FileSource, files, labels)}``, indexed at the first call and cached.

        Raises:
            FileNotFoundError, ValueError: As the reader's class documents.
        """
        return dict(self._index()[1])

    def _index(self) -> tuple[list[str], Entries]:
        if self._cache is None:
            self._cache = self._read()
        return self._cache

    def _read(self) -> tuple[list[str], Entries]:
        """``(classes, entries)`` from the file system (called once, by :meth:`_index`)."""
        raise NotImplementedError

    def _dataset(self, split: str, train: bool) -> Dataset:
        source, files, labels = self._index()[1][split]
        transform = image_transform(self.transform, self.image_size, self.resize_size, train)
        return FileImages(source, files, labels, np.arange(len(files)), transform)

    def __getstate__(self) -> dict[str, Any]:  # pickles and deep copies carry the arguments, not the file index
        return {**self.__dict__, "_cache": None}


class ImageListDomain(ImageFileDomain):
    """Images named by an image list (``relative/path label`` lines, relative to ``root``); split ``"all"``.

    The list is read at the first call that needs it (:meth:`dataset`, :meth:`entries`, and
    :attr:`classes` when ``classes`` is None: the class count comes from the labels).

    Args:
        root: The folder the listed paths are relative to.
        list_file: The list; a relative path that is not a file from the working directory is
            looked up in ``root``.
        classes: Class names (index = label); None: ``"0"`` .. ``"N-1"``, N = the largest label + 1.
        image_size: Side of the crops (224).
        resize_size: Side of the square the images are resized to first (256).
        transform: A preset of :data:`TRANSFORMS` (see :class:`ImageFileDomain`).

    Raises:
        ValueError: At construction, if an argument is malformed; when the list is read, if a list
            line is malformed (naming the file and line) or a label is outside ``classes``.
        FileNotFoundError: When the list is read, if the list or its first image does not exist.
    """

    def __init__(self, root: str, list_file: str, classes: Sequence[str] | None = None, image_size: int = 224,
                 resize_size: int = 256, transform: str = "imagenet") -> None:
        super().__init__(image_size, resize_size, transform)
        _check_root(root)
        if not isinstance(list_file, (str, os.PathLike)) or not str(list_file):
            raise ValueError(f"`list_file` must be the path of an image list, got {list_file!r}.")
        if classes is not None and (isinstance(classes, str) or not isinstance(classes, Sequence) or not classes
                                    or not all(isinstance(c, str) for c in classes)
                                    or len(set(classes)) != len(classes)):
            raise ValueError(f"`classes` must be None or a list of distinct class names, got {classes!r}.")
        self.root, self.list_file = str(root), str(list_file)
        self._fixed_classes = None if classes is None else list(classes)

    def _argument(self, name: str) -> Any:
        if name == "classes":  # the argument as given: config() and repr never read the list
            return self._fixed_classes
        return super()._argument(name)

    def _read(self) -> tuple[list[str], Entries]:
        base, classes = _check_root(self.root), self._fixed_classes
        path = Path(self.list_file).expanduser()
        if not path.is_absolute() and not path.is_file() and (base / path).is_file():
            path = base / path
        if not path.is_file():
            raise FileNotFoundError(f"`list_file` {self.list_file!r} does not exist (looked in the working directory "
                                    f"and in {base}).")
        files, labels = read_image_list(path, None if classes is None else len(classes))
        names = list(classes) if classes is not None else [str(k) for k in range(int(labels.max()) + 1)]
        source = FileSource(base)
        _first_exists(source, files, str(path))
        return names, {"all": (source, files, labels)}

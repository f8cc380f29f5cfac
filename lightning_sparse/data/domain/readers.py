"""Image domains of the UDA benchmarks: Office-31, Office-Home, VisDA-2017, DomainNet.

Construction checks the argument values only and touches no file, so that a recipe (and a
:class:`~lightning_sparse.data.domain.datamodule.DomainAdaptationDataModule`) builds on a machine
without the data. Every reader indexes its files once, at the first call that needs them
(:meth:`~ImageFileDomain.dataset`, :meth:`~ImageFileDomain.entries`, and :attr:`~ImageFileDomain.classes`
where the class list comes from the files: DomainNet, :class:`ImageListDomain` without
``classes``), and caches the index; a wrong ``root`` or domain raises there (at the data module's
``setup``, before training starts). Images are decoded lazily, one per item
(:class:`~lightning_sparse.data.image.datasets.FileImages`: ``uint8`` RGB, torchvision's decoder
with a PIL fallback). Nothing is downloaded. Items are ``(x, global_label)``, ``x`` float32
``(3, image_size, image_size)`` normalised with ImageNet's mean and std.

Transforms (``transform``), with ``Resize`` to a ``resize_size`` square as the UDA code bases do
(TLlib's ``ResizeImage``, also DANN / CDAN / PADA):

* ``"imagenet"``: training ``Resize((resize_size, resize_size))`` + ``RandomCrop(image_size)`` +
  horizontal flip; evaluation ``Resize((resize_size, resize_size))`` + ``CenterCrop(image_size)``;
* ``"imagenet_rrc"``: training ``Resize`` as above + ``RandomResizedCrop(image_size)`` + flip
  (TLlib's default); evaluation as ``"imagenet"``.

Layouts (``root`` is the folder given):

* image list (:class:`ImageListDomain`): lines ``relative/path/to/image.jpg <label>``, paths
  relative to ``root``, blank lines skipped; the format of the UDA code bases' list files.
* Office-31 (Saenko et al. 2010, "Adapting Visual Category Models to New Domains", ECCV):
  ``root/<domain>/images/<class>/*.jpg`` (the original archive), or TLlib's
  ``root/image_list/<domain>.txt`` when it exists; domains amazon, dslr, webcam; 31 classes
  (:data:`OFFICE31_CLASSES`).
* Office-Home (Venkateswara et al. 2017, "Deep Hashing Network for Unsupervised Domain
  Adaptation", CVPR): ``root/<domain>/<class>/*.jpg``; domains Art, Clipart, Product,
  Real_World (also ``RealWorld``; the folder may be ``Real_World``, ``RealWorld`` or
  ``Real World``); 65 classes (:data:`OFFICEHOME_CLASSES`, the folder names in sorted order;
  a class folder missing in a domain only warns).
* VisDA-2017 classification (Peng et al. 2017, arXiv:1710.06924): ``root/<split>/<class>/*`` with
  ``root/<split>/image_list.txt`` (lines ``<class>/<file> <label>``, relative to
  ``root/<split>``; the class folders are scanned when the list is absent); splits ``train``
  (synthetic renderings, the usual source) and ``validation`` (real photos, the usual target);
  12 classes (:data:`VISDA2017_CLASSES`).
* DomainNet (Peng et al. 2019, "Moment Matching for Multi-Source Domain Adaptation", ICCV):
  ``root/<domain>/<class>/*.jpg`` with the split lists ``root/<domain>_train.txt`` and
  ``root/<domain>_test.txt`` (lines ``<domain>/<class>/<file>.jpg <label>``); 345 classes, the
  sorted class folders of ``root/<domain>`` (or, without them, the class names in the lists).
"""

from __future__ import annotations

import numpy as np

from lightning_sparse._validation import check_choice
from lightning_sparse.data.domain.image_lists import (
    TRANSFORMS,
    ImageFileDomain,
    ImageListDomain,
    _check_root,
    _first_exists,
    _scan,
    image_transform,
    read_image_list,
)
from lightning_sparse.data.image.files import FileSource

__all__ = [
    "DOMAINNET_DOMAINS", "OFFICE31_CLASSES", "OFFICE31_DOMAINS", "OFFICEHOME_CLASSES", "OFFICEHOME_DOMAINS",
    "TRANSFORMS", "VISDA2017_CLASSES", "VISDA2017_SPLITS", "DomainNet", "ImageFileDomain", "ImageListDomain",
    "Office31", "OfficeHome", "VisDA2017", "image_transform", "read_image_list",
]

OFFICE31_DOMAINS: tuple[str, ...] = ("amazon", "dslr", "webcam")
OFFICE31_CLASSES: tuple[str, ...] = (
    "back_pack", "bike", "bike_helmet", "bookcase", "bottle", "calculator", "desk_chair", "desk_lamp",
    "desktop_computer", "file_cabinet", "headphones", "keyboard", "laptop_computer", "letter_tray",
    "mobile_phone", "monitor", "mouse", "mug", "paper_notebook", "pen", "phone", "printer", "projector",
    "punchers", "ring_binder", "ruler", "scissors", "speaker", "stapler", "tape_dispenser", "trash_can",
)
OFFICEHOME_DOMAINS: tuple[str, ...] = ("Art", "Clipart", "Product", "Real_World")
OFFICEHOME_CLASSES: tuple[str, ...] = (
    "Alarm_Clock", "Backpack", "Batteries", "Bed", "Bike", "Bottle", "Bucket", "Calculator", "Calendar", "Candles",
    "Chair", "Clipboards", "Computer", "Couch", "Curtains", "Desk_Lamp", "Drill", "Eraser", "Exit_Sign", "Fan",
    "File_Cabinet", "Flipflops", "Flowers", "Folder", "Fork", "Glasses", "Hammer", "Helmet", "Kettle", "Keyboard",
    "Knives", "Lamp_Shade", "Laptop", "Marker", "Monitor", "Mop", "Mouse", "Mug", "Notebook", "Oven", "Pan",
    "Paper_Clip", "Pen", "Pencil", "Postit_Notes", "Printer", "Push_Pin", "Radio", "Refrigerator", "Ruler",
    "Scissors", "Screwdriver", "Shelf", "Sink", "Sneakers", "Soda", "Speaker", "Spoon", "TV", "Table", "Telephone",
    "ToothBrush", "Toys", "Trash_Can", "Webcam",
)
VISDA2017_SPLITS: tuple[str, ...] = ("train", "validation")
VISDA2017_CLASSES: tuple[str, ...] = ("aeroplane", "bicycle", "bus", "car", "horse", "knife", "motorcycle", "person",
                                      "plant", "skateboard", "train", "truck")
DOMAINNET_DOMAINS: tuple[str, ...] = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
_REAL_WORLD = ("Real_World", "RealWorld", "Real World")


class Office31(ImageFileDomain):
    """One Office-31 domain (amazon, dslr, webcam): 31 office object classes; split ``"all"``.

    :attr:`classes` is the constant :data:`OFFICE31_CLASSES`; the files are indexed at the first
    :meth:`dataset` (or :meth:`entries`) call.

    Args:
        root: The Office-31 folder (see the module docstring for the two layouts).
        domain: ``"amazon"``, ``"dslr"`` or ``"webcam"``.
        image_size: Side of the crops (224).
        resize_size: Side of the square the images are resized to first (256).
        transform: A preset of :data:`TRANSFORMS` (see :class:`ImageFileDomain`).

    Raises:
        ValueError: At construction, if ``domain`` (or another argument) is unknown; when the files
            are indexed, if a class folder is not an Office-31 class or a list line is malformed.
        FileNotFoundError: When the files are indexed, if neither layout is found (or the first
            listed image does not exist).
    """

    def __init__(self, root: str, domain: str, image_size: int = 224, resize_size: int = 256,
                 transform: str = "imagenet") -> None:
        super().__init__(image_size, resize_size, transform, OFFICE31_CLASSES)
        _check_root(root)
        check_choice("domain", domain, OFFICE31_DOMAINS)
        self.root, self.domain = str(root), domain

    def _read(self) -> tuple[list[str], Entries]:
        base, domain = _check_root(self.root), self.domain
        listed = base / "image_list" / f"{domain}.txt"
        if listed.is_file():
            files, labels = read_image_list(listed, len(OFFICE31_CLASSES))
            source = FileSource(base)
            _first_exists(source, files, str(listed))
        else:
            folder = next((f for f in (base / domain / "images", base / domain) if f.is_dir()), None)
            if folder is None:
                raise FileNotFoundError(f"Office-31 {domain!r}: found neither {listed} nor the folder "
                                        f"{base / domain / 'images'} (`<domain>/images/<class>/<image>`).")
            files, labels = _scan(folder, OFFICE31_CLASSES, f"Office-31 {domain!r}")
            source = FileSource(folder)
        return list(OFFICE31_CLASSES), {"all": (source, files, labels)}


class OfficeHome(ImageFileDomain):
    """One Office-Home domain (Art, Clipart, Product, Real_World): 65 classes; split ``"all"``.

    :attr:`classes` is the constant :data:`OFFICEHOME_CLASSES`; the domain folder is scanned at
    the first :meth:`dataset` (or :meth:`entries`) call.

    Args:
        root: The folder holding the domain folders.
        domain: ``"Art"``, ``"Clipart"``, ``"Product"``, ``"Real_World"`` (or ``"RealWorld"``).
        image_size: Side of the crops (224).
        resize_size: Side of the square the images are resized to first (256).
        transform: A preset of :data:`TRANSFORMS` (see :class:`ImageFileDomain`).

    Raises:
        ValueError: At construction, if ``domain`` (or another argument) is unknown; when the
            folder is scanned, if a class folder is not an Office-Home class.
        FileNotFoundError: When the folder is scanned, if the domain folder does not exist or holds
            no images.
    """

    def __init__(self, root: str, domain: str, image_size: int = 224, resize_size: int = 256,
                 transform: str = "imagenet") -> None:
        super().__init__(image_size, resize_size, transform, OFFICEHOME_CLASSES)
        _check_root(root)
        check_choice("domain", domain, OFFICEHOME_DOMAINS + ("RealWorld",))
        self.root, self.domain = str(root), domain

    def _read(self) -> tuple[list[str], Entries]:
        base, domain = _check_root(self.root), self.domain
        names = _REAL_WORLD if domain in _REAL_WORLD else (domain,)
        folder = next((base / n for n in names if (base / n).is_dir()), None)
        if folder is None:
            raise FileNotFoundError(f"Office-Home {domain!r}: no folder {' or '.join(str(base / n) for n in names)} "
                                    "(`<domain>/<class>/<image>`).")
        files, labels = _scan(folder, OFFICEHOME_CLASSES, f"Office-Home {domain!r}")
        return list(OFFICEHOME_CLASSES), {"all": (FileSource(folder), files, labels)}


class VisDA2017(ImageFileDomain):
    """One VisDA-2017 classification split: ``"train"`` (synthetic) or ``"validation"`` (real); 12 classes.

    The dataset split of :meth:`dataset` is ``"all"``: ``split`` here chooses the domain.
    :attr:`classes` is the constant :data:`VISDA2017_CLASSES`; the files are indexed at the first
    :meth:`dataset` (or :meth:`entries`) call.

    Args:
        root: The folder holding ``train/`` and ``validation/``.
        split: ``"train"`` or ``"validation"``.
        image_size: Side of the crops (224).
        resize_size: Side of the square the images are resized to first (256).
        transform: A preset of :data:`TRANSFORMS` (see :class:`ImageFileDomain`).

    Raises:
        ValueError: At construction, if ``split`` (or another argument) is unknown; when the files
            are indexed, if a list line or class folder is malformed.
        FileNotFoundError: When the files are indexed, if ``root/<split>`` holds neither
            ``image_list.txt`` nor class folders (or the first listed image does not exist).
    """

    def __init__(self, root: str, split: str = "train", image_size: int = 224, resize_size: int = 256,
                 transform: str = "imagenet") -> None:
        super().__init__(image_size, resize_size, transform, VISDA2017_CLASSES)
        _check_root(root)
        check_choice("split", split, VISDA2017_SPLITS)
        self.root, self.split = str(root), split

    def _read(self) -> tuple[list[str], Entries]:
        base, split = _check_root(self.root), self.split
        folder, listed = base / split, base / split / "image_list.txt"
        if listed.is_file():
            files, labels = read_image_list(listed, len(VISDA2017_CLASSES))
            _first_exists(FileSource(folder), files, str(listed))
        elif folder.is_dir():
            files, labels = _scan(folder, VISDA2017_CLASSES, f"VisDA-2017 {split!r}")
        else:
            raise FileNotFoundError(f"VisDA-2017 {split!r}: {listed} does not exist (nor the folder {folder}).")
        return list(VISDA2017_CLASSES), {"all": (FileSource(folder), files, labels)}


class DomainNet(ImageFileDomain):
    """One DomainNet domain with its official train / test lists; 345 classes; splits all, train, test.

    The class list comes from the data (the sorted class folders of ``root/<domain>``, or the
    lists' class names), so :attr:`classes` reads the lists (once, cached, like :meth:`dataset`):
    a :class:`~lightning_sparse.data.domain.datamodule.DomainAdaptationDataModule` of DomainNet
    domains needs the data at construction.

    Args:
        root: The folder holding ``<domain>/`` and ``<domain>_train.txt`` / ``<domain>_test.txt``.
        domain: One of :data:`DOMAINNET_DOMAINS`.
        image_size: Side of the crops (224).
        resize_size: Side of the square the images are resized to first (256).
        transform: A preset of :data:`TRANSFORMS` (see :class:`ImageFileDomain`).

    Raises:
        ValueError: At construction, if ``domain`` (or another argument) is unknown; when the lists
            are read (:attr:`classes`, :meth:`dataset`), if a list line is malformed or a listed
            class folder disagrees with its label.
        FileNotFoundError: When the lists are read, if a split list (or its first image) does not
            exist.
    """

    splits = ("all", "train", "test")

    def __init__(self, root: str, domain: str, image_size: int = 224, resize_size: int = 256,
                 transform: str = "imagenet") -> None:
        super().__init__(image_size, resize_size, transform)
        _check_root(root)
        check_choice("domain", domain, DOMAINNET_DOMAINS)
        self.root, self.domain = str(root), domain

    def _read(self) -> tuple[list[str], Entries]:
        base, domain = _check_root(self.root), self.domain
        lists = {s: read_image_list(base / f"{domain}_{s}.txt") for s in ("train", "test")}
        folder = base / domain
        if folder.is_dir():
            classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        else:
            names: dict[int, str] = {}
            for files, labels in lists.values():
                for f, y in zip(files, labels.tolist()):
                    names.setdefault(y, f.split("/")[-2] if f.count("/") >= 1 else str(y))
            if sorted(names) != list(range(len(names))):
                raise ValueError(f"DomainNet {domain!r}: without the folder {folder} the lists must use the labels "
                                 f"0..N-1, got {len(names)} labels up to {max(names)}.")
            classes = [names[k] for k in range(len(names))]
        source = FileSource(base)
        entries: Entries = {}
        for split, (files, labels) in lists.items():
            path = base / f"{domain}_{split}.txt"
            for number, (f, y) in enumerate(zip(files, labels.tolist()), 1):
                parts = f.split("/")
                if y >= len(classes) or (len(parts) >= 2 and parts[-2] != classes[y]):
                    known = classes[y] if y < len(classes) else "none (out of range)"
                    raise ValueError(f"{path}, entry {number}: label {y} is class {known!r}, but the path {f!r} "
                                     "is in another class folder.")
            _first_exists(source, files, str(path))
            entries[split] = (source, files, labels)
        entries["all"] = (source, lists["train"][0] + lists["test"][0],
                          np.concatenate([lists["train"][1], lists["test"][1]]))
        return classes, entries

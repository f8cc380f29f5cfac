"""Image files under a folder or inside a zip, read in any process, and decoded to ``uint8`` RGB.

The ImageFolder layout of torchvision (``<split>/<class>/**/<image>``, classes are the sorted
folder names) as a :class:`FileSource`: a directory, or a zip of such a tree read member by
member without extracting (convenient on read-only or network storage); :func:`decode_rgb`
decodes one image.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

__all__ = ["IMAGE_EXTENSIONS", "FileSource", "decode_rgb", "find_split", "scan_classes"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ...) to a ``uint8`` RGB array ``(H, W, 3)``."""
    try:  # libjpeg-turbo / libpng through torchvision: about 3x faster than PIL on small JPEGs
        tensor = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        return np.ascontiguousarray(tensor.permute(1, 2, 0).numpy())  # (C, H, W) -> (H, W, C)
    except (RuntimeError, ValueError):
        with Image.open(io.BytesIO(data)) as image:
            return np.array(image.convert("RGB"))


_ZIP_HANDLES: dict[tuple[str, int, int], zipfile.ZipFile] = {}


def _zip_handle(path: Path) -> zipfile.ZipFile:
    """One open ``ZipFile`` per (file, version, process): parsing the directory of a 50k-member
    zip takes half a second, and DataLoader workers need handles of their own."""
    key = (str(path.resolve()), path.stat().st_mtime_ns, os.getpid())
    if key not in _ZIP_HANDLES:
        _ZIP_HANDLES[key] = zipfile.ZipFile(path)
    return _ZIP_HANDLES[key]


class FileSource:
    """Files under a directory or inside a zip (below ``prefix``), readable in any process.

    With ``optional_prefix=True`` (zips only), ``prefix`` applies only if every member lies
    below it (decided when the zip is first read, so that a cache check never opens it).
    """

    def __init__(self, path: str | os.PathLike, prefix: str = "", optional_prefix: bool = False) -> None:
        self.path = Path(path)
        self.is_zip = self.path.is_file()
        self._prefix = self._requested = prefix
        self._optional = optional_prefix and self.is_zip
        self._names: list[str] | None = None

    @property
    def prefix(self) -> str:
        if self._optional:
            names = [n for n in self._zipfile().namelist() if not n.endswith("/")]
            if not all(n.startswith(self._prefix) for n in names):
                self._prefix = ""
            self._optional = False
        return self._prefix

    def __repr__(self) -> str:
        return f"{self.path}" + (f"!{self.prefix}" if self.prefix else "")

    def _zipfile(self) -> zipfile.ZipFile:
        return _zip_handle(self.path)

    def names(self) -> list[str]:
        """Every file below ``prefix``, as sorted posix paths relative to it (hidden ones skipped)."""
        if self._names is None:
            if self.is_zip:
                raw = [n[len(self.prefix):] for n in self._zipfile().namelist()
                       if n.startswith(self.prefix) and not n.endswith("/")]
            else:
                root = self.path / self.prefix
                raw = [(Path(d) / f).relative_to(root).as_posix()
                       for d, _, files in os.walk(root, followlinks=True) for f in files]
            self._names = sorted(n for n in raw if "/." not in f"/{n}" and not n.startswith("__MACOSX/"))
        return self._names

    def read(self, name: str) -> bytes:
        """The bytes of file ``name`` (relative to ``prefix``)."""
        if self.is_zip:
            return self._zipfile().read(self.prefix + name)
        return (self.path / self.prefix / name).read_bytes()

    def sub(self, folder: str) -> FileSource:
        """The same source restricted to ``folder`` (a sub-directory of ``prefix``)."""
        folder = f"{folder.rstrip('/')}/"
        out = FileSource(self.path, self.prefix + folder)
        if self._names is not None:
            out._names = [n[len(folder):] for n in self._names if n.startswith(folder)]
        return out

    def exists(self, name: str) -> bool:
        if self.is_zip:
            try:
                self._zipfile().getinfo(self.prefix + name)
                return True
            except KeyError:
                return False
        return (self.path / self.prefix / name).is_file()

    def fingerprint(self) -> str:
        """A string that changes when the files change (path, size, modification time)."""
        if self.is_zip:
            st = self.path.stat()
            return f"zip|{self.path.resolve()}|{self._requested}|{st.st_size}|{st.st_mtime_ns}"
        stats = [(self.path / self.prefix / n).stat() for n in self.names()]
        return (f"dir|{(self.path / self.prefix).resolve()}|{len(stats)}|"
                f"{sum(s.st_size for s in stats)}|{max((s.st_mtime_ns for s in stats), default=0)}")


def find_split(data_dir: Path, split: str) -> FileSource | None:
    """``<data_dir>/<split>/`` or ``<data_dir>/<split>.zip`` (inner ``<split>/`` folder optional)."""
    if (data_dir / split).is_dir():
        return FileSource(data_dir / split)
    archive = data_dir / f"{split}.zip"
    if archive.is_file():
        return FileSource(archive, f"{split}/", optional_prefix=True)
    return None


def scan_classes(source: FileSource) -> dict[str, list[str]]:
    """``{class: [image paths]}`` of an ImageFolder tree: ``<class>/**/<image>``, sorted."""
    tree: dict[str, list[str]] = {}
    for name in source.names():
        parts = name.split("/")
        if len(parts) >= 2 and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
            tree.setdefault(parts[0], []).append(name)
    return dict(sorted(tree.items()))

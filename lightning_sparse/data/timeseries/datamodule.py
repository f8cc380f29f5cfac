"""UCR/UEA time-series classification archives: file readers and a LightningDataModule.

The benchmarks of DSN (Xiao et al. 2022, "Dynamic Sparse Network for Time Series
Classification: Learning What to See", NeurIPS, arXiv:2212.09840): the univariate UCR archive
(Dau et al. 2019, "The UCR Time Series Archive", arXiv:1810.07758) and the multivariate UEA
archive (Bagnall et al. 2018, "The UEA multivariate time series classification archive, 2018",
arXiv:1811.00075). Each problem ships a fixed train/test split in the archive layout
``<data_dir>/<Name>/<Name>_TRAIN.<ext>`` and ``<Name>_TEST.<ext>``.

Readers (our own parsers, in :mod:`lightning_sparse.data.timeseries.formats`; every error names
the file and the line): ``.ts``, UCR ``.tsv`` / text and ``.arff``, also in :mod:`lightning_sparse.data.timeseries`.

:class:`TimeSeriesDataModule` (also as :class:`UCRDataModule` and :class:`UEADataModule`,
subclasses that only rename it after the archives) reads both files when it is
constructed, so ``num_classes``, ``num_channels``, ``series_length`` and ``class_names`` are known
before training (a LightningCLI config can link ``data.num_classes`` to the model). Nothing is
downloaded: by default (``data_dir=None``) it reads the problems that ship inside aeon
(:data:`BUNDLED_DATASETS`); for the full archives, unpack them from timeseriesclassification.com
and pass ``data_dir``.

What the official DSN code (github.com/QiaoXiao7282/DSN, ``trainer_DSN.py`` and ``utils/``) does,
and what is reproduced here:

- Batch size ``max(int(min(n_train / 10, 16)), 2)`` (:func:`dsn_batch_size`, the default).
- Values as stored in the archive (UCR 2015 series are already z-normalised per series; UEA
  series are used raw), ``NaN`` (missing values, padding) replaced by 0, short series padded at
  the end. ``normalize="none"`` reproduces that exactly; the default ``"zscore"`` normalises each
  series and channel over its valid points first (the UCR convention, also for UEA).
- No validation split: the model of the epoch with the lowest training loss is evaluated once on
  the test split, which is the accuracy reported. Hence ``val_split=0`` by default (no validation
  loader); ``validate_on_test=True`` shows test curves during training, for monitoring only.
- ``.ts`` labels map to ``0..C-1`` in the header's ``@classLabel`` order, as here; UCR text
  labels in numeric order (the code's rescaling of consecutive integer labels gives the same).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_sparse._validation import check_bool
from lightning_sparse.data.base import DataModule, check_count
from lightning_sparse.data.splits import stratified_take
from lightning_sparse.data.timeseries.formats import SeriesCollection, read_series_file

__all__ = ["BUNDLED_DATASETS", "TimeSeriesDataModule", "UCRDataModule", "UEADataModule", "dsn_batch_size", "znormalize"]

BUNDLED_DATASETS: tuple[str, ...] = (
    "ACSF1", "ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand", "JapaneseVowels",
    "JapaneseVowels_eq", "OSULeaf", "PickupGestureWiimoteZ", "PickupGestureWiimoteZ_eq",
)
"""Classification problems whose train/test files ship inside aeon (``aeon/datasets/data``);
the ``_eq`` variants are the equal-length (truncated) versions of the unequal-length ones."""

_FORMATS: dict[str, tuple[str, ...]] = {"ts": (".ts",), "tsv": (".tsv",), "arff": (".arff",), "txt": (".txt", "")}
_NORMALIZE = ("zscore", "none")


def znormalize(series: np.ndarray) -> np.ndarray:
    """Z-normalise every series and channel over its non-``NaN`` points (``NaN`` stay ``NaN``).

    Population standard deviation, as the UCR archive; a constant channel becomes 0.

    Args:
        series: ``(..., L)`` values with ``NaN`` at missing and padded points.

    Returns:
        float32 values of the same shape.

    Examples:
        >>> z = znormalize(np.array([[1.0, 2.0, 3.0, np.nan]]))
        >>> z.dtype, z.astype(np.float64).round(4).tolist()
        (dtype('float32'), [[-1.2247, 0.0, 1.2247, nan]])
    """
    x = np.asarray(series, dtype=np.float64)
    valid = ~np.isnan(x)
    count = np.maximum(valid.sum(-1, keepdims=True), 1)
    mean = np.where(valid, x, 0.0).sum(-1, keepdims=True) / count
    std = np.sqrt((np.where(valid, x - mean, 0.0) ** 2).sum(-1, keepdims=True) / count)
    return ((x - mean) / np.where(std > 1e-8, std, 1.0)).astype(np.float32)


def dsn_batch_size(n_train: int, cap: int = 16) -> int:
    """The DSN code's batch size: a tenth of the training series, at most ``cap``, at least 2.

    ``max(int(min(n_train / 10, cap)), 2)`` with ``cap`` the script's ``--batch-size`` (16).

    Examples:
        >>> dsn_batch_size(50), dsn_batch_size(1000), dsn_batch_size(12)
        (5, 16, 2)
    """
    return max(int(min(n_train / 10, cap)), 2)


def _aeon_data_dir() -> Path | None:
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


class _SeriesSplit(Dataset):
    """In-memory series; items ``(x, y)``, plus ``length`` when asked."""

    def __init__(self, series: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor,
                 source_indices: np.ndarray, return_lengths: bool) -> None:
        self.series = series  # (N, C, L) float32, zeros past each length
        self.labels = labels  # (N,) int64
        self.lengths = lengths  # (N,) int64
        self.source_indices = source_indices  # (N,) positions in the archive file
        self.return_lengths = return_lengths

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        if self.return_lengths:
            return self.series[i], self.labels[i], self.lengths[i]
        return self.series[i], self.labels[i]


class TimeSeriesDataModule(DataModule):
    """One UCR/UEA classification problem with the archive's train/test split.

    Both files are read at construction (``train_raw``, ``test_raw``), so ``num_classes``,
    ``num_channels``, ``series_length`` and ``class_names`` are set right away. ``setup``
    normalises (``normalize``), replaces ``NaN`` (missing values, padding) by 0 and pads every
    series at the end to ``series_length``.

    Batches are tuples:

    - ``(x, y)`` by default: ``x`` float32 ``(B, C, L)`` with ``C = num_channels`` and
      ``L = series_length``, zero past each series' end; ``y`` int64 ``(B,)``.
    - ``return_index=True``: training batches are ``(x, y, index)``, ``index`` int64 ``(B,)`` the
      positions in ``train_dataset`` (the key of data-pruning callbacks;
      ``train_dataset.source_indices[index]`` are the rows of the training file).
    - ``return_lengths=True``: every split appends ``lengths`` int64 ``(B,)``, the number of
      valid time points (``torch.arange(L) < lengths[:, None]`` is the mask): ``(x, y, lengths)``
      (what ``TimeSeriesClassifier`` hands to length-aware backbones), or
      ``(x, y, index, lengths)`` with ``return_index``. ``ImageClassifier`` would read a third
      item as ``index``, so do not combine it with ``return_lengths``.

    Splits: ``train_dataset`` / ``test_dataset`` are the archive's files in file order. With
    ``val_split > 0`` a validation set (stratified, seeded) is carved from the training file; with ``val_split=0`` there is none
    (``val_dataloader`` returns ``[]``) unless ``validate_on_test=True``, which validates on the
    test split (monitoring only: the DSN protocol keeps the epoch with the lowest training loss).

    Args:
        dataset: Problem name, e.g. ``"GunPoint"``; a name ending in ``_eq`` / ``_nmv`` is also
            looked for in the folder of its base name (``JapaneseVowels/JapaneseVowels_eq_TRAIN.ts``).
        data_dir: Folder of the archive layout ``<dataset>/<dataset>_TRAIN.<ext>`` and
            ``_TEST.<ext>``; None: the copies inside aeon (:data:`BUNDLED_DATASETS`).
        batch_size: Series per batch for every split; None: :func:`dsn_batch_size` of the number
            of training series (the DSN rule). The resolved value is ``self.batch_size``.
        normalize: ``"zscore"`` (each series and channel over its valid points, see
            :func:`znormalize`) or ``"none"`` (the values as stored, as the DSN code).
        val_split: Validation series taken from the training file: a count (int) or a fraction
            in ``[0, 1)``; 0: none.
        validate_on_test: Validate on the test split (``val_split`` must be 0).
        pad_to: Pad every series to this length (at least the longest series of both files);
            None: the longest series.
        file_format: ``"ts"``, ``"tsv"``, ``"arff"`` or ``"txt"`` (UCR 2015 text files named
            ``<dataset>_TRAIN`` or ``.txt``); None: the first found in that order.
        return_lengths: Batches of every split also carry the series' lengths.
        **kwargs: ``return_index`` (training batches also carry each series' index),
            ``num_workers``, ``seed`` (of the validation split), ``loader`` (``"memory"``:
            batches sliced from the padded series tensors, the same items): see
            :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is out of range, ``dataset`` is not bundled with aeon while
            ``data_dir`` is None, or a file is malformed (naming the file and line).
        FileNotFoundError: If ``data_dir`` lacks the files of ``dataset``.

    Examples:
        >>> dm = TimeSeriesDataModule("GunPoint")
        >>> dm.num_classes, dm.num_channels, dm.series_length, dm.class_names
        (2, 1, 150, ('1', '2'))
        >>> dm.batch_size  # max(int(min(50 training series / 10, 16)), 2)
        5
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), y.dtype
        ((5, 1, 150), torch.int64)
        >>> dm = UEADataModule("JapaneseVowels", batch_size=8, return_lengths=True)
        >>> dm.setup("test")
        >>> x, y, lengths = next(iter(dm.test_dataloader()))
        >>> tuple(x.shape), lengths.tolist()[:4]
        ((8, 12, 29), [19, 17, 19, 18])
    """

    _batch_size_optional = True  # None: the DSN rule
    _memory_loader = True  # loader="memory": the padded series tensors as they are, no augmentation

    def __init__(
        self,
        dataset: str,
        data_dir: str | None = None,
        batch_size: int | None = None,
        normalize: str = "zscore",
        val_split: int | float = 0,
        validate_on_test: bool = False,
        pad_to: int | None = None,
        file_format: str | None = None,
        return_lengths: bool = False,
        **kwargs: Any,
    ) -> None:
        if not isinstance(dataset, str) or not dataset or "/" in dataset or "\\" in dataset:
            raise ValueError(f"`dataset` must be a problem name such as 'GunPoint', got {dataset!r}.")
        super().__init__(batch_size=batch_size, **kwargs)
        if normalize not in _NORMALIZE:
            raise ValueError(f"`normalize` must be one of {list(_NORMALIZE)}, got {normalize!r}.")
        if isinstance(val_split, bool) or not (
            (isinstance(val_split, int) and val_split >= 0) or (isinstance(val_split, float) and 0 <= val_split < 1)
        ):
            raise ValueError(f"`val_split` must be a count >= 0 or a fraction in [0, 1), got {val_split!r}.")
        check_bool("validate_on_test", validate_on_test)
        if validate_on_test and val_split:
            raise ValueError(f"`validate_on_test=True` needs `val_split=0`, got `val_split={val_split}`.")
        check_count("pad_to", pad_to, 1, allow_none=True)
        if file_format is not None and file_format not in _FORMATS:
            raise ValueError(f"`file_format` must be one of {list(_FORMATS)} or None, got {file_format!r}.")
        check_bool("return_lengths", return_lengths)
        self.dataset, self.data_dir, self.normalize = dataset, data_dir, normalize
        self.val_split, self.validate_on_test, self.file_format = val_split, validate_on_test, file_format
        self.return_lengths = return_lengths

        self.train_file, self.test_file = self._find_files()
        self.train_raw = read_series_file(self.train_file)
        self.test_raw = read_series_file(self.test_file, self.train_raw.class_names)
        if self.test_raw.num_channels != self.train_raw.num_channels:
            raise ValueError(f"{self.test_file}: {self.test_raw.num_channels} channels, but the training "
                             f"file has {self.train_raw.num_channels}.")
        self.class_names: tuple[str, ...] = self.train_raw.class_names
        self.num_classes: int = len(self.class_names)
        self.num_channels: int = self.train_raw.num_channels
        longest = max(self.train_raw.series_length, self.test_raw.series_length)
        if pad_to is not None and pad_to < longest:
            raise ValueError(f"`pad_to` must be at least the longest series of {dataset} ({longest}), got {pad_to}.")
        self.series_length: int = pad_to or longest
        self._train_idx, self._val_idx = self._split()
        self.batch_size: int = batch_size or dsn_batch_size(len(self._train_idx))

    @property
    def in_channels(self) -> int:
        """``num_channels`` under the name that model builders take."""
        return self.num_channels

    def _find_files(self) -> tuple[Path, Path]:
        root = Path(self.data_dir).expanduser() if self.data_dir is not None else _aeon_data_dir()
        if root is not None and self.data_dir is not None and not root.is_dir():
            raise FileNotFoundError(f"`data_dir` must be a folder of the archive layout, got {self.data_dir!r} "
                                    "(not a directory).")
        base = re.sub(r"_(eq|nmv)$", "", self.dataset)
        folders = [root / self.dataset] + ([root / base] if base != self.dataset else []) if root else []
        suffixes = [ext for fmt in ([self.file_format] if self.file_format else _FORMATS) for ext in _FORMATS[fmt]]
        for ext in suffixes:
            for folder in folders:
                train, test = folder / f"{self.dataset}_TRAIN{ext}", folder / f"{self.dataset}_TEST{ext}"
                if train.is_file() and test.is_file():
                    return train, test
        if self.data_dir is None:
            raise ValueError(
                f"`dataset` must be one of the problems bundled with aeon {list(BUNDLED_DATASETS)} when "
                f"`data_dir` is None, got {self.dataset!r}. For other UCR/UEA problems pass `data_dir`, a "
                "folder holding <Name>/<Name>_TRAIN.ts and <Name>/<Name>_TEST.ts (the archive layout); "
                "nothing is downloaded."
            )
        names = " or ".join(f"{self.dataset}_TRAIN{ext}" for ext in suffixes)
        raise FileNotFoundError(
            f"`data_dir` ({root}) holds no files of `dataset` {self.dataset!r}: looked for {names} and the "
            f"matching _TEST files in {' and '.join(str(f) for f in folders)}."
        )

    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        labels = self.train_raw.labels
        n = labels.shape[0]
        n_val = self.val_split if isinstance(self.val_split, int) else round(self.val_split * n)
        if n_val == 0:
            return np.arange(n), np.arange(0)
        if n_val >= n:
            raise ValueError(f"`val_split` must leave training series ({n} in {self.train_file.name}), "
                             f"got {self.val_split!r} ({n_val} series).")
        val, train = stratified_take(labels, n_val, np.random.default_rng(self.seed))
        return train, val

    def _make(self, data: SeriesCollection, idx: np.ndarray) -> _SeriesSplit:
        series = data.series[idx]  # (n, C, L_file), NaN-padded
        if self.normalize == "zscore":
            series = znormalize(series)
        padded = np.zeros((len(idx), self.num_channels, self.series_length), dtype=np.float32)
        padded[..., : series.shape[-1]] = np.where(np.isnan(series), 0.0, series)
        return _SeriesSplit(torch.from_numpy(padded), torch.from_numpy(data.labels[idx]),
                            torch.from_numpy(data.lengths[idx]), idx, self.return_lengths)

    def setup(self, stage: str | None = None) -> None:
        """Build the training, validation and test datasets (all splits, any stage)."""
        if self.train_dataset is not None:
            return
        self.train_dataset = self._make(self.train_raw, self._train_idx)
        if len(self._val_idx):
            self.val_dataset = self._make(self.train_raw, self._val_idx)
        self.test_dataset = self._make(self.test_raw, np.arange(len(self.test_raw.labels)))
        if self.validate_on_test:
            self.val_dataset = self.test_dataset


    # loader="memory" hooks
    def memory_arrays(self, split: str) -> tuple[torch.Tensor, ...] | None:
        """``(series (N, C, L), labels (N,))``, plus ``lengths (N,)`` with ``return_lengths``."""
        dataset = getattr(self, f"{split}_dataset")
        if not isinstance(dataset, _SeriesSplit):
            return None
        if dataset.return_lengths:
            return dataset.series, dataset.labels, dataset.lengths
        return dataset.series, dataset.labels

    def memory_transform(self, train: bool) -> None:
        """None: no augmentation (nor on the per-sample path)."""
        return None


class UCRDataModule(TimeSeriesDataModule):
    """:class:`TimeSeriesDataModule` under the univariate UCR archive's name (same arguments).

    Examples:
        >>> UCRDataModule("ItalyPowerDemand").num_classes
        2
    """


class UEADataModule(TimeSeriesDataModule):
    """:class:`TimeSeriesDataModule` under the multivariate UEA archive's name (same arguments).

    Examples:
        >>> UEADataModule("BasicMotions").class_names
        ('Standing', 'Running', 'Walking', 'Badminton')
    """

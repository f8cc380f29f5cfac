"""UCR/UEA time-series classification: the DataModule and the archive file readers."""

from lightning_sparse.data.timeseries.datamodule import (
    BUNDLED_DATASETS,
    TimeSeriesDataModule,
    UCRDataModule,
    UEADataModule,
    dsn_batch_size,
    znormalize,
)
from lightning_sparse.data.timeseries.formats import (
    SeriesCollection,
    read_arff,
    read_series_file,
    read_ts,
    read_tsv,
)

__all__ = [
    "BUNDLED_DATASETS",
    "SeriesCollection",
    "TimeSeriesDataModule",
    "UCRDataModule",
    "UEADataModule",
    "dsn_batch_size",
    "read_arff",
    "read_series_file",
    "read_ts",
    "read_tsv",
    "znormalize",
]

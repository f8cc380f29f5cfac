"""The UCR/UEA file readers, also importable from here: see :mod:`lightning_sparse.data.timeseries.formats`."""

from lightning_sparse.data.timeseries.formats import SeriesCollection, read_arff, read_series_file, read_ts, read_tsv

__all__ = ["SeriesCollection", "read_arff", "read_series_file", "read_ts", "read_tsv"]

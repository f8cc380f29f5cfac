"""Audio-visual speech data: the GRID corpus (real face video with the speaker's audio).

- :mod:`~lightning_sparse.data.avsr.grid`: GRID's sentence grammar (a sentence id such as
  ``bbaf2n`` is "bin blue at f two now"), its ``.align`` word timings, decoding a clip's video
  frames and audio (PyAV), and :class:`GRIDDataset`.
"""

from lightning_sparse.data.avsr.grid import (
    GRID_ALIGN_UNITS_PER_SECOND,
    GRID_GRAMMAR,
    GRIDDataset,
    grid_transcript,
    read_align,
    read_audio_track,
)

__all__ = [
    "GRID_ALIGN_UNITS_PER_SECOND",
    "GRID_GRAMMAR",
    "GRIDDataset",
    "grid_transcript",
    "read_align",
    "read_audio_track",
]

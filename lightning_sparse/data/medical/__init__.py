"""3D medical image segmentation on MONAI: the Decathlon layout and single-subject real volumes.

:class:`DecathlonDataModule` reads a Medical Segmentation Decathlon task (or BTCV / AMOS in
that layout): seeded folds, training patches from ``RandCropByPosNegLabeld``, whole volumes
for validation, optional RAM or disk caches. :class:`SingleSubjectDataModule` splits one real
labelled volume (the TotalSegmentator CT / MR examples, nilearn's MNI152 template with grey
and white matter, or any image + label pair) into disjoint training, validation and test
slabs. Both yield dict batches ``{"image", "label"[, "index"]}`` (see
:mod:`lightning_sparse.data.medical.base`); their preprocessing is made of ``monai.transforms``
(:mod:`lightning_sparse.data.medical.transforms`).
"""

from lightning_sparse.data.medical.base import IndexedVolumes, MedicalDataModule
from lightning_sparse.data.medical.decathlon import (
    CACHE_MODES,
    DecathlonDataModule,
    kfold_split,
    read_label_names,
    write_decathlon,
)
from lightning_sparse.data.medical.transforms import INTENSITIES, KeepLabelsd
from lightning_sparse.data.medical.volumes import (
    SOURCES,
    TOTALSEG_ORGANS,
    SingleSubjectDataModule,
    grid_starts,
    mni152_segmentation,
    slab_bounds,
)

__all__ = [
    "CACHE_MODES",
    "DecathlonDataModule",
    "INTENSITIES",
    "IndexedVolumes",
    "KeepLabelsd",
    "MedicalDataModule",
    "SOURCES",
    "SingleSubjectDataModule",
    "TOTALSEG_ORGANS",
    "grid_starts",
    "kfold_split",
    "mni152_segmentation",
    "read_label_names",
    "slab_bounds",
    "write_decathlon",
]

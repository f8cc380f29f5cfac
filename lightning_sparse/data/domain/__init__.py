"""Data of unsupervised domain adaptation: domains, class settings and the source/target DataModule.

* :mod:`~lightning_sparse.data.domain.domains`: the :class:`Domain` base (a global class list,
  ``dataset(split, train)`` of ``(x, global_label)`` items) and the in-memory digit domains
  :class:`MNISTDomain` and :class:`UCIDigitsDomain` (one value scale, a real shift);
* :mod:`~lightning_sparse.data.domain.speakers`: :class:`FSDDSpeakerDomain`, spoken digits of
  chosen speakers as log-mel images (a speaker-to-speaker shift);
* :mod:`~lightning_sparse.data.domain.readers`: image lists, Office-31, Office-Home, VisDA-2017
  and DomainNet read from their published layouts (nothing is downloaded);
* :mod:`~lightning_sparse.data.domain.settings`: closed / partial / open / universal class
  bookkeeping (:func:`class_split`) and the literature's splits (:func:`standard_split`);
* :mod:`~lightning_sparse.data.domain.datamodule`: :class:`DomainAdaptationDataModule`, training
  batches ``{"source", "source_label", "target"}`` and target evaluation batches ``(x, y)`` with
  the unknown label ``K``;
* :mod:`~lightning_sparse.data.domain.multitask`: :class:`MultiTaskDataModule`, one domain per task
  split into train / val / trval / test (MOML's multi-task learning), training batches
  ``{"train", "val", "trval"}`` of per-task ``(x, y)``, one evaluation loader per task;
* :mod:`~lightning_sparse.data.domain.semi_supervised`: :class:`SemiSupervisedDADataModule`, a few
  labelled target images per class (MME's semi-supervised protocol), training batches
  ``{"source", "source_label", "target", "target_label", "target_unlabeled"}``.
"""

from lightning_sparse.data.domain.datamodule import DomainAdaptationDataModule, PairedDomains, Relabelled
from lightning_sparse.data.domain.domains import (
    DIGIT_CLASSES,
    DigitImages,
    Domain,
    MNISTDomain,
    TensorImages,
    UCIDigitsDomain,
    build_domain,
)
from lightning_sparse.data.domain.multitask import MULTITASK_SPLITS, MultiTaskDataModule, MultiTaskPairs, TaskSample
from lightning_sparse.data.domain.readers import (
    DOMAINNET_DOMAINS,
    OFFICE31_CLASSES,
    OFFICE31_DOMAINS,
    OFFICEHOME_CLASSES,
    OFFICEHOME_DOMAINS,
    TRANSFORMS,
    VISDA2017_CLASSES,
    VISDA2017_SPLITS,
    DomainNet,
    ImageFileDomain,
    ImageListDomain,
    Office31,
    OfficeHome,
    VisDA2017,
    image_transform,
    read_image_list,
)
from lightning_sparse.data.domain.semi_supervised import SSDA_KEYS, SemiSupervisedDADataModule, SemiSupervisedPairs
from lightning_sparse.data.domain.settings import (
    BENCHMARKS,
    SETTINGS,
    ClassSplit,
    class_split,
    infer_setting,
    standard_split,
)
from lightning_sparse.data.domain.speakers import FSDDSpeakerDomain, Spectrograms

__all__ = [
    "BENCHMARKS",
    "DIGIT_CLASSES",
    "DOMAINNET_DOMAINS",
    "MULTITASK_SPLITS",
    "OFFICE31_CLASSES",
    "OFFICE31_DOMAINS",
    "OFFICEHOME_CLASSES",
    "OFFICEHOME_DOMAINS",
    "SETTINGS",
    "SSDA_KEYS",
    "TRANSFORMS",
    "VISDA2017_CLASSES",
    "VISDA2017_SPLITS",
    "ClassSplit",
    "DigitImages",
    "Domain",
    "DomainAdaptationDataModule",
    "DomainNet",
    "FSDDSpeakerDomain",
    "ImageFileDomain",
    "ImageListDomain",
    "MNISTDomain",
    "MultiTaskDataModule",
    "MultiTaskPairs",
    "Office31",
    "OfficeHome",
    "PairedDomains",
    "Relabelled",
    "SemiSupervisedDADataModule",
    "SemiSupervisedPairs",
    "Spectrograms",
    "TaskSample",
    "TensorImages",
    "UCIDigitsDomain",
    "VisDA2017",
    "build_domain",
    "class_split",
    "image_transform",
    "infer_setting",
    "read_image_list",
    "standard_split",
]

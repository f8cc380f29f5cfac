"""LightningModules: what is trained and how it is scored (loss, metrics, optimizer).

:class:`~lightning_sparse.tasks.base.SparseTask` is their shared base (batch layouts, metric
triples, the per-sample contract, optimizers and schedules). :class:`SpeechRecognizer` trains CTC
speech recognition on the speech batch dicts; :class:`AVSpeechRecognizer` trains audio-visual
speech recognition (hybrid CTC/attention) on the audio-visual batch dicts; :class:`Segmenter`
trains 3D (or 2D) medical segmentation on MONAI (Dice + CE, deep supervision, sliding windows);
:class:`DomainAdaptation` trains unsupervised domain adaptation (source-only, uniform OT, LIWUDA)
in the closed-set, partial, open-set and universal settings; :class:`MultiObjectiveMetaLearner`
trains multi-task models with equal weights, MGDA or MOML's learned task weights, and
:class:`MinimaxEntropyAdaptation` semi-supervised domain adaptation (S+T, MME, MOML-MME).
"""

from lightning_sparse.tasks.asr import SpeechRecognizer
from lightning_sparse.tasks.avsr import AVSpeechRecognizer
from lightning_sparse.tasks.base import SparseTask
from lightning_sparse.tasks.classification import ImageClassifier
from lightning_sparse.tasks.domain_adaptation import DomainAdaptation
from lightning_sparse.tasks.meta_learning import MultiObjectiveMetaLearner
from lightning_sparse.tasks.minimax_entropy import MinimaxEntropyAdaptation
from lightning_sparse.tasks.segmentation import Segmenter
from lightning_sparse.tasks.timeseries import TimeSeriesClassifier

__all__ = [
    "AVSpeechRecognizer",
    "DomainAdaptation",
    "ImageClassifier",
    "MinimaxEntropyAdaptation",
    "MultiObjectiveMetaLearner",
    "Segmenter",
    "SparseTask",
    "SpeechRecognizer",
    "TimeSeriesClassifier",
]

"""Metric maths as plain functions (torchmetrics-style functional layer)."""

from lightning_sparse.metrics.corruption import (
    ALEXNET_IMAGENET_C_ERRORS,
    CORRUPTION_FAMILIES,
    RobustnessSummary,
    corruption_error,
    read_robustness_csv,
    relative_corruption_error,
    summarize_robustness,
)
from lightning_sparse.metrics.hardness import SCORES, average_scores, el2n_scores, grand_scores, read_scores, save_scores
from lightning_sparse.metrics.uda import (
    DomainAdaptationMetrics,
    h_score,
    mean_class_accuracy,
    open_set_scores,
    shared_class_accuracy,
)

__all__ = [
    "SCORES",
    "average_scores",
    "el2n_scores",
    "grand_scores",
    "read_scores",
    "save_scores",
    "ALEXNET_IMAGENET_C_ERRORS",
    "CORRUPTION_FAMILIES",
    "RobustnessSummary",
    "corruption_error",
    "read_robustness_csv",
    "relative_corruption_error",
    "summarize_robustness",
    "DomainAdaptationMetrics",
    "h_score",
    "mean_class_accuracy",
    "open_set_scores",
    "shared_class_accuracy",
]

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

__all__ = [
    "ALEXNET_IMAGENET_C_ERRORS",
    "CORRUPTION_FAMILIES",
    "RobustnessSummary",
    "corruption_error",
    "read_robustness_csv",
    "relative_corruption_error",
    "summarize_robustness",
]

"""Corruption-robustness metrics: mean corruption accuracy, CE / mCE and relative mCE.

Definitions from Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR, arXiv:1903.12261:

- corruption error ``CE_c = sum_s E_{s,c} / sum_s E^ref_{s,c}`` over severities ``s``;
- ``mCE`` = mean of ``CE_c`` over corruptions;
- relative ``CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^ref_{s,c} - E^ref_clean)``; relative mCE
  its mean.

"Robust accuracy" here is the mean corruption accuracy (mean over corruptions of the mean over
severities), the quantity compared in Wu et al. 2025, "Dynamic Sparse Training versus Dense
Training: The Unexpected Winner in Image Corruption Robustness", ICLR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# AlexNet's ImageNet-C error per corruption, averaged over the 5 severities, as published with
# ImageNet-C (the reference model of mCE).
ALEXNET_IMAGENET_C_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}

CORRUPTION_FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "spatter"),
    "digital": ("brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
    "temporal": ("frame_drop", "frame_rate", "video_compression"),
}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _ref_per_severity(ref: float | Sequence[float], n: int) -> list[float]:
    if isinstance(ref, (int, float)):
        return [float(ref)] * n  # an average over severities: the ratio of sums equals the ratio of means
    ref = [float(r) for r in ref]
    if len(ref) != n:
        raise ValueError(f"reference errors must have one value per severity ({n}), got {len(ref)}.")
    return ref


def corruption_error(errors: Sequence[float], reference: float | Sequence[float]) -> float:
    """``CE = sum_s E_s / sum_s E^ref_s``.

    Examples:
        >>> round(corruption_error([0.2, 0.4], [0.5, 0.7]), 6)
        0.5
        >>> round(corruption_error([0.2, 0.4], 0.6), 6)
        0.5
    """
    ref = _ref_per_severity(reference, len(errors))
    return sum(errors) / sum(ref)


def relative_corruption_error(
    errors: Sequence[float], clean_error: float, reference: float | Sequence[float], reference_clean_error: float
) -> float:
    """``sum_s (E_s - E_clean) / sum_s (E^ref_s - E^ref_clean)``.

    Examples:
        >>> round(relative_corruption_error([0.3, 0.5], 0.1, [0.6, 0.8], 0.2), 6)
        0.6
    """
    ref = _ref_per_severity(reference, len(errors))
    return sum(e - clean_error for e in errors) / sum(r - reference_clean_error for r in ref)


@dataclass
class RobustnessSummary:
    """Accuracy on clean and corrupted data and the derived metrics."""

    clean_accuracy: float
    accuracy: dict[str, dict[int, float]]  # corruption -> severity -> accuracy
    corruption_accuracy: dict[str, float] = field(default_factory=dict)  # mean over severities
    robust_accuracy: float = float("nan")  # mean corruption accuracy
    ce: dict[str, float] = field(default_factory=dict)
    mce: float | None = None
    relative_ce: dict[str, float] = field(default_factory=dict)
    relative_mce: float | None = None

    def rows(self) -> list[dict[str, object]]:
        """Flat rows ``corruption, severity, accuracy, error`` (severity 0 = clean)."""
        out: list[dict[str, object]] = [
            {"corruption": "clean", "severity": 0, "accuracy": self.clean_accuracy, "error": 1 - self.clean_accuracy}
        ]
        for name, per in self.accuracy.items():
            for sev, acc in sorted(per.items()):
                out.append({"corruption": name, "severity": sev, "accuracy": acc, "error": 1 - acc})
        return out


def read_robustness_csv(path: str) -> RobustnessSummary:
    """Read back the ``robustness.csv`` written by ``CorruptionRobustness`` (per-severity rows;
    the derived columns are recomputed from them, without reference errors)."""
    import csv

    clean, accuracy = float("nan"), {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["corruption"] == "clean":
                clean = float(row["accuracy"])
            elif row["severity"].isdigit():
                accuracy.setdefault(row["corruption"], {})[int(row["severity"])] = float(row["accuracy"])
    return summarize_robustness(clean, accuracy)


def summarize_robustness(
    clean_accuracy: float,
    accuracy: Mapping[str, Mapping[int, float]],
    reference_errors: Mapping[str, float | Sequence[float]] | None = None,
    reference_clean_error: float | None = None,
) -> RobustnessSummary:
    """Derive mean corruption accuracy, (relative) CE and mCE from per-(corruption, severity) accuracy.

    CE/mCE are computed over the corruptions that have a reference error; relative ones also need
    ``reference_clean_error``.

    Examples:
        >>> s = summarize_robustness(0.9, {"fog": {1: 0.8, 2: 0.6}}, {"fog": 0.5}, 0.2)
        >>> round(s.robust_accuracy, 3), round(s.mce, 3), round(s.relative_mce, 3)
        (0.7, 0.6, 0.667)
    """
    summary = RobustnessSummary(clean_accuracy, {k: dict(v) for k, v in accuracy.items()})
    summary.corruption_accuracy = {k: _mean(list(v.values())) for k, v in accuracy.items()}
    if summary.corruption_accuracy:
        summary.robust_accuracy = _mean(list(summary.corruption_accuracy.values()))
    for name, per in accuracy.items():
        if reference_errors is None or name not in reference_errors:
            continue
        errors = [1 - per[s] for s in sorted(per)]
        ref = reference_errors[name]
        summary.ce[name] = corruption_error(errors, ref)
        if reference_clean_error is not None:
            summary.relative_ce[name] = relative_corruption_error(errors, 1 - clean_accuracy, ref, reference_clean_error)
    if summary.ce:
        summary.mce = _mean(list(summary.ce.values()))
    if summary.relative_ce:
        summary.relative_mce = _mean(list(summary.relative_ce.values()))
    return summary

"""Segmentation and calibration metrics from a pixel confusion matrix and per-pixel probabilities."""

from __future__ import annotations

import numpy as np

from mlcore.data.oxford import CLASS_NAMES


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """counts[true, predicted] over every pixel."""
    flat = labels.astype(np.int64).ravel() * num_classes + predictions.astype(np.int64).ravel()
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> list[float | None]:
    """Per-class ratios; None where a class never occurs (undefined, not zero)."""
    return [float(n / d) if d else None for n, d in zip(numerator, denominator, strict=True)]


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def segmentation_metrics(confusion: np.ndarray) -> dict:
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    iou = _ratio(true_positive, actual + predicted - true_positive)
    dice = _ratio(2 * true_positive, actual + predicted)
    precision = _ratio(true_positive, predicted)
    recall = _ratio(true_positive, actual)
    per_class = {
        name: {"iou": iou[k], "dice": dice[k], "precision": precision[k], "recall": recall[k]}
        for k, name in enumerate(CLASS_NAMES)
    }
    return {
        "pixel_accuracy": float(true_positive.sum() / max(confusion.sum(), 1)),
        "mean_iou": _mean(iou),
        "mean_dice": _mean(dice),
        "mean_precision": _mean(precision),
        "per_class": per_class,
    }


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int) -> list[dict]:
    """Top-label reliability: per equal-width confidence bin, pixel count, mean confidence, accuracy."""
    probabilities = probabilities.reshape(-1, probabilities.shape[-1])
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels.ravel()
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    confidence_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=correct, minlength=bins)
    return [
        {
            "bin": b,
            "count": int(counts[b]),
            "confidence": float(confidence_sum[b] / counts[b]) if counts[b] else None,
            "accuracy": float(correct_sum[b] / counts[b]) if counts[b] else None,
        }
        for b in range(bins)
    ]


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """Sum over bins of |accuracy - confidence|, weighted by the bin's share of pixels."""
    table = reliability_bins(probabilities, labels, bins)
    total = sum(row["count"] for row in table)
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in table if row["count"]) / total)


def scores(probabilities: np.ndarray, labels: np.ndarray, bins: int) -> dict:
    """Every test metric of one model's per-pixel probabilities (evaluate and compare score models alike)."""
    return {
        **segmentation_metrics(confusion_matrix(labels, probabilities.argmax(axis=-1))),
        "ece": expected_calibration_error(probabilities, labels, bins),
    }


def lookup(metrics: dict, key: str):
    """'calibrated.per_class.pet.iou' in a nested metrics document."""
    value = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value

"""Input and output statistics whose distributions are compared between the training data and served traffic.

Three signals, each a histogram with fixed bucket edges so that prepare (on the training split) and the
inference server (as Prometheus histograms) count into the same buckets:
- brightness: mean luma (ITU-R BT.601) of the image, 0 (black) to 1 (white);
- long_side: the longer side of the image as it arrived, in pixels;
- pet_fraction: the fraction of pixels labelled pet (training: the trimap; serving: the predicted mask).

Buckets follow Prometheus' `le` rule: bucket i counts values v with edges[i-1] < v <= edges[i]; one more
bucket counts the values above the last edge.
"""

from __future__ import annotations

import math

import numpy as np

PET = 0  # class index of "pet" (mlcore.data.oxford.CLASS_NAMES)
LUMA = np.array([0.299, 0.587, 0.114])
SIGNALS: dict[str, tuple[float, ...]] = {
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "long_side": (64, 128, 256, 384, 512, 768, 1024, 2048, 4096),
    "pet_fraction": (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
}
# the inference server's Prometheus histograms, one per signal, with the edges above as their buckets
METRIC_NAMES = {
    "brightness": "mlcore_input_brightness",
    "long_side": "mlcore_input_long_side_pixels",
    "pet_fraction": "mlcore_predicted_pet_fraction",
}
SMOOTHING = 0.5  # added to every bucket's count before comparing: an empty bucket is not infinitely surprising


def brightness(pixels: np.ndarray) -> float:
    """Mean luma of uint8 RGB pixels [..., H, W, 3], in [0, 1]."""
    return float(np.tensordot(pixels, LUMA, axes=([-1], [0])).mean() / 255.0)


def pet_fraction(labels: np.ndarray) -> float:
    """Share of pixels whose class index is pet."""
    return float(np.count_nonzero(labels == PET) / max(labels.size, 1))


def bucket_of(value: float, edges: tuple[float, ...]) -> int:
    """Index of the bucket that counts `value` (len(edges) for values above the last edge)."""
    return next((i for i, edge in enumerate(edges) if value <= edge), len(edges))


def histogram(values: list[float], edges: tuple[float, ...]) -> list[int]:
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bucket_of(value, edges)] += 1
    return counts


def population_stability_index(expected: list[float], observed: list[float]) -> float:
    """PSI = sum (o - e) * ln(o / e) over the buckets' shares; under 0.1 is usually read as no shift, over 0.25 as a
    large one. Counts are smoothed so that a bucket empty on one side does not make the index infinite."""
    if len(expected) != len(observed):
        raise ValueError(f"histograms of {len(expected)} and {len(observed)} buckets cannot be compared")
    e = [count + SMOOTHING for count in expected]
    o = [count + SMOOTHING for count in observed]
    e_total, o_total = sum(e), sum(o)
    return sum(
        (oi / o_total - ei / e_total) * math.log((oi / o_total) / (ei / e_total)) for ei, oi in zip(e, o, strict=True)
    )

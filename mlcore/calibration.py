"""Post-hoc calibration of per-pixel class probabilities, fitted on the calibration split.

Temperature scaling (one parameter, keeps the argmax, so accuracy and IoU are unchanged) is the
default; per-class isotonic regression (the seed project's choice) is selectable. A calibrator is
stored as plain JSON: readable, diffable and byte-stable, with no pickled code.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression

EPSILON = 1e-7
MAX_ISOTONIC_PIXELS = 2_000_000


def _flatten(probabilities: np.ndarray) -> np.ndarray:
    return probabilities.reshape(-1, probabilities.shape[-1]).astype(np.float64)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _with_temperature(log_probabilities: np.ndarray, temperature: float) -> np.ndarray:
    # log-probabilities differ from logits by a per-pixel constant, which softmax ignores
    return _softmax(log_probabilities / temperature)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    log_p = np.log(np.clip(_flatten(probabilities), EPSILON, 1.0))
    target = labels.ravel().astype(np.int64)

    def negative_log_likelihood(log_temperature: float) -> float:
        scaled = _with_temperature(log_p, float(np.exp(log_temperature)))
        return float(-np.mean(np.log(np.clip(scaled[np.arange(target.size), target], EPSILON, 1.0))))

    result = minimize_scalar(negative_log_likelihood, bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-6})
    return {"method": "temperature", "temperature": float(np.exp(result.x))}


def _subsample(count: int) -> slice:
    """A fixed stride keeps isotonic fitting bounded in memory and deterministic."""
    return slice(None, None, max(1, -(-count // MAX_ISOTONIC_PIXELS)))


def fit_isotonic(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    flat = _flatten(probabilities)
    target = labels.ravel()
    keep = _subsample(target.size)
    flat, target = flat[keep], target[keep]
    classes = []
    for k in range(flat.shape[1]):
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(flat[:, k], target == k)
        classes.append({"x": model.X_thresholds_.tolist(), "y": model.y_thresholds_.tolist()})
    return {"method": "isotonic", "classes": classes}


def fit_calibrator(method: str, probabilities: np.ndarray, labels: np.ndarray) -> dict:
    return {"temperature": fit_temperature, "isotonic": fit_isotonic}[method](probabilities, labels)


def apply_calibrator(calibrator: dict, probabilities: np.ndarray) -> np.ndarray:
    """Calibrated probabilities with the input's shape; every pixel's probabilities sum to 1."""
    flat = _flatten(probabilities)
    if calibrator["method"] == "temperature":
        calibrated = _with_temperature(np.log(np.clip(flat, EPSILON, 1.0)), calibrator["temperature"])
    else:
        columns = [np.interp(flat[:, k], c["x"], c["y"]) for k, c in enumerate(calibrator["classes"])]
        stacked = np.stack(columns, axis=1)
        total = stacked.sum(axis=1, keepdims=True)
        calibrated = np.where(total > 0, stacked / np.where(total > 0, total, 1.0), 1.0 / flat.shape[1])
    return calibrated.reshape(probabilities.shape).astype(np.float32)

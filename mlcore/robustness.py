"""A model's test metrics under every attack at every budget (params.yaml robustness).

Budget 0 runs the attacks too, as a check of the whole path: the perturbed images are predicted in the same
batches as the clean ones, so at budget 0 they must score exactly what the clean predictions score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras
import numpy as np

from mlcore.attacks import attack_function, perturb_split
from mlcore.calibration import apply_calibrator
from mlcore.params import RobustnessParams
from mlcore.predict import SplitPredictions, predict_images
from mlcore.robustness_scores import attacked_scores, epsilon_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Robustness:
    target: str  # the model the attacks' gradients come from: "calibrated" or "raw"
    results: dict[str, dict[str, dict]]  # attack -> epsilon key -> {"raw", "calibrated"} -> attacked_scores
    clean_predictions: np.ndarray  # the calibrated model's classes on the clean images
    at_largest: dict[str, tuple[np.ndarray, np.ndarray]]  # attack -> perturbed images, calibrated predictions


def attack_temperature(calibrator: dict) -> tuple[float, str]:
    """The temperature the attacks' loss uses, and what it therefore attacks: a temperature calibrator is
    differentiable, so the calibrated model is attacked; isotonic maps are flat almost everywhere (zero
    gradient), so then the raw model is attacked and the calibrator applied to what that gives."""
    if calibrator["method"] == "temperature":
        return float(calibrator["temperature"]), "calibrated"
    return 1.0, "raw"


def measure_robustness(
    model: keras.Model, calibrator: dict, clean: SplitPredictions, settings: RobustnessParams, batch_size: int
) -> Robustness:
    probabilities = {"raw": clean.probabilities, "calibrated": apply_calibrator(calibrator, clean.probabilities)}
    clean_predictions = {name: values.argmax(axis=-1) for name, values in probabilities.items()}
    temperature, target = attack_temperature(calibrator)
    results: dict[str, dict[str, dict]] = {}
    at_largest = {}
    for attack in settings.attacks:
        perturb = attack_function(model, attack, settings.pgd, settings.seed, temperature)
        results[attack] = {}
        for epsilon in settings.epsilons:
            perturbed = perturb_split(perturb, clean.images, clean.labels, epsilon, batch_size)
            raw = predict_images(model, perturbed, batch_size)
            attacked = {"raw": raw, "calibrated": apply_calibrator(calibrator, raw)}
            scores = {
                name: attacked_scores(values, clean.labels, clean_predictions[name])
                for name, values in attacked.items()
            }
            results[attack][epsilon_key(epsilon)] = scores
            log.info("%s at epsilon %d: calibrated mean IoU %.4f", attack, epsilon, scores["calibrated"]["mean_iou"])
        at_largest[attack] = (perturbed, attacked["calibrated"].argmax(axis=-1))
    return Robustness(target, results, clean_predictions["calibrated"], at_largest)

"""Scores under attack, without TensorFlow (the gate and the model card read them): the metrics of one budget,
the metrics file's keys, the one-number summary and the curve."""

from __future__ import annotations

import numpy as np

from mlcore.metrics import confusion_matrix, segmentation_metrics


def epsilon_key(epsilon: int) -> str:
    """The metrics file's key of a budget: `eps_2` (DVC flattens nested keys with dots)."""
    return f"eps_{epsilon}"


def key_epsilon(key: str) -> int:
    """The budget of a metrics file key (the file's keys sort as text: eps_16 before eps_2)."""
    return int(key.removeprefix("eps_"))


def attacked_scores(probabilities: np.ndarray, labels: np.ndarray, clean_predictions: np.ndarray) -> dict:
    """The metrics one budget reports, and the share of pixels whose predicted class the attack changed."""
    predictions = probabilities.argmax(axis=-1)
    metrics = segmentation_metrics(confusion_matrix(labels, predictions))
    return {
        "mean_iou": metrics["mean_iou"],
        "pet_iou": metrics["per_class"]["pet"]["iou"],
        "pixel_accuracy": metrics["pixel_accuracy"],
        "label_flip_fraction": float(np.mean(predictions != clean_predictions)),
    }


def strongest(results: dict[str, dict[str, dict]], epsilon: int) -> dict:
    """The attack that lowers the calibrated mean IoU most at `epsilon`: the one-number summary published."""
    key = epsilon_key(epsilon)
    attack = min(results, key=lambda name: (results[name][key]["calibrated"]["mean_iou"], name))
    return {"attack": attack, "epsilon": epsilon, **results[attack][key]}


def curve_rows(results: dict[str, dict[str, dict]], epsilons: list[int]) -> list[dict]:
    """One row per budget: the lowest calibrated mean IoU of any attack, then each attack's raw and calibrated
    mean IoU (plots/robustness/mean_iou.csv)."""
    rows = []
    for epsilon in epsilons:
        scores = {attack: results[attack][epsilon_key(epsilon)] for attack in results}
        row = {"epsilon": epsilon, "strongest_calibrated": min(s["calibrated"]["mean_iou"] for s in scores.values())}
        for attack, by_model in scores.items():
            row |= {f"{attack}_{model}": by_model[model]["mean_iou"] for model in ("raw", "calibrated")}
        rows.append(row)
    return rows

"""robustness: the calibrated model's test metrics under FGSM and PGD (L-infinity) at each budget in params.yaml,
with the mean IoU against the budget and a grid of clean against perturbed predictions."""

from __future__ import annotations

import logging

from mlcore.io import read_json, write_csv, write_json
from mlcore.model.serialize import load_model
from mlcore.params import Params
from mlcore.plots import attack_grid, robustness_curve
from mlcore.predict import predict_split
from mlcore.robustness import measure_robustness
from mlcore.robustness_scores import curve_rows, strongest
from mlcore.stages.paths import CALIBRATOR_PATH, MODEL_PATH, PLOTS_DIR, PREPARED_DIR, ROBUSTNESS_PATH

log = logging.getLogger(__name__)
ROBUSTNESS_PLOTS = PLOTS_DIR / "robustness"
EPSILON_UNIT = "grey levels, 1/255 of the pixel range"


def run(params: Params) -> None:
    settings = params.robustness
    model = load_model(MODEL_PATH)
    calibrator = read_json(CALIBRATOR_PATH)
    test = predict_split(model, PREPARED_DIR, "test", params.train.batch_size)  # as evaluate predicts it
    measured = measure_robustness(model, calibrator, test, settings, params.train.batch_size)

    summary = strongest(measured.results, settings.epsilons[-1])
    report = {"test_images": len(test.ids), "attack_target": measured.target, "strongest": summary}
    write_json(ROBUSTNESS_PATH, report | {"attacks": measured.results})
    rows = curve_rows(measured.results, settings.epsilons)
    write_csv(ROBUSTNESS_PLOTS / "mean_iou.csv", rows)
    series = [name for name in rows[0] if name not in ("epsilon", "strongest_calibrated")]  # each attack and model
    robustness_curve(rows, series, EPSILON_UNIT, ROBUSTNESS_PLOTS / "mean_iou.png")
    perturbed, predictions = measured.at_largest[summary["attack"]]
    shown = slice(0, settings.grid_examples)
    attack_grid(
        test.images[shown],
        perturbed[shown],
        test.labels[shown],
        measured.clean_predictions[shown],
        predictions[shown],
        test.ids[shown],
        f"{summary['attack']} eps {summary['epsilon']}/255",
        ROBUSTNESS_PLOTS / "examples.png",
    )
    log.info("strongest: %s at epsilon %d", summary["attack"], summary["epsilon"])

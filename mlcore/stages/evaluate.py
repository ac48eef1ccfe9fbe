"""evaluate: raw, calibrated and trivial-baseline metrics on the test split, with plots for `dvc plots`."""

from __future__ import annotations

import logging

import numpy as np

from mlcore.calibration import apply_calibrator
from mlcore.data.oxford import CLASS_NAMES
from mlcore.io import read_json, write_csv, write_json
from mlcore.metrics import reliability_bins, scores
from mlcore.model.serialize import load_model
from mlcore.params import Params
from mlcore.plots import prediction_grid
from mlcore.predict import predict_split
from mlcore.stages.paths import CALIBRATOR_PATH, EVALUATE_PATH, MODEL_PATH, PLOTS_DIR, PREPARED_DIR

log = logging.getLogger(__name__)
EVALUATE_PLOTS = PLOTS_DIR / "evaluate"


def run(params: Params) -> None:
    bins = params.calibrate.ece_bins
    test = predict_split(load_model(MODEL_PATH), PREPARED_DIR, "test", params.train.batch_size)
    calibrated = apply_calibrator(read_json(CALIBRATOR_PATH), test.probabilities)
    frequencies = read_json(PREPARED_DIR / "manifest.json")["splits"]["train"]["class_pixel_frequency"]
    prior = np.array([frequencies[name] for name in CLASS_NAMES], np.float32)
    baseline = np.broadcast_to(prior, test.probabilities.shape)  # majority class at every pixel

    metrics = {
        "test_images": len(test.ids),
        "raw": scores(test.probabilities, test.labels, bins),
        "calibrated": scores(calibrated, test.labels, bins),
        "baseline_majority_class": scores(baseline, test.labels, bins),
    }
    write_json(EVALUATE_PATH, metrics)

    predictions = calibrated.argmax(axis=-1)
    stride = max(1, -(-test.labels.size // params.evaluate.confusion_plot_pixels))
    write_json(
        EVALUATE_PLOTS / "confusion.json",
        [
            {"actual": CLASS_NAMES[a], "predicted": CLASS_NAMES[p]}
            for a, p in zip(test.labels.ravel()[::stride], predictions.ravel()[::stride], strict=True)
        ],
    )
    for name, probabilities in (("raw", test.probabilities), ("calibrated", calibrated)):
        curve = [row for row in reliability_bins(probabilities, test.labels, bins) if row["count"]]
        write_csv(EVALUATE_PLOTS / f"calibration_{name}.csv", curve)
    shown = slice(0, params.evaluate.grid_examples)
    prediction_grid(
        test.images[shown],
        test.labels[shown],
        predictions[shown],
        calibrated.max(axis=-1)[shown],
        test.ids[shown],
        EVALUATE_PLOTS / "predictions.png",
    )
    log.info(
        "test mean IoU: calibrated %.4f, baseline %.4f; ECE raw %.4f, calibrated %.4f",
        metrics["calibrated"]["mean_iou"],
        metrics["baseline_majority_class"]["mean_iou"],
        metrics["raw"]["ece"],
        metrics["calibrated"]["ece"],
    )

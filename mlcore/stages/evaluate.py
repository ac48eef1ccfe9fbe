"""evaluate: raw, calibrated and trivial-baseline metrics on the test split, with plots for `dvc plots`."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from mlcore.params import Params
from mlcore.runtime import pin_runtime
from mlcore.stages._common import run_stage
from mlcore.stages.paths import CALIBRATOR_PATH, METRICS_DIR, MODEL_PATH, PLOTS_DIR, PREPARED_DIR

log = logging.getLogger(__name__)
EVALUATE_PLOTS = PLOTS_DIR / "evaluate"


def _write_curve(path: Path, table: list[dict]) -> None:
    from mlcore.io import atomic_file

    with atomic_file(path) as staging, staging.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["bin", "count", "confidence", "accuracy"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for row in table if row["count"])


def evaluate_stage(params: Params) -> None:
    pin_runtime(params.runtime, params.seed)
    from mlcore.calibration import apply_calibrator
    from mlcore.data.oxford import CLASS_NAMES
    from mlcore.io import read_json, write_json
    from mlcore.metrics import reliability_bins, scores
    from mlcore.model.serialize import load_model
    from mlcore.plots import prediction_grid
    from mlcore.predict import predict_split

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
    write_json(METRICS_DIR / "evaluate.json", metrics)

    predictions = calibrated.argmax(axis=-1)
    stride = max(1, -(-test.labels.size // params.evaluate.confusion_plot_pixels))
    write_json(
        EVALUATE_PLOTS / "confusion.json",
        [
            {"actual": CLASS_NAMES[a], "predicted": CLASS_NAMES[p]}
            for a, p in zip(test.labels.ravel()[::stride], predictions.ravel()[::stride], strict=True)
        ],
    )
    _write_curve(EVALUATE_PLOTS / "calibration_raw.csv", reliability_bins(test.probabilities, test.labels, bins))
    _write_curve(EVALUATE_PLOTS / "calibration_calibrated.csv", reliability_bins(calibrated, test.labels, bins))
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


if __name__ == "__main__":
    run_stage(evaluate_stage)

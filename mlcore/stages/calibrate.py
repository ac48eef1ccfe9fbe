"""calibrate: fit a calibrator on the calibration split; report ECE before and after, plus a diagram."""

from __future__ import annotations

import logging

from mlcore.calibration import apply_calibrator, fit_calibrator
from mlcore.io import write_json
from mlcore.metrics import expected_calibration_error, reliability_bins
from mlcore.model.serialize import load_model
from mlcore.params import Params
from mlcore.plots import reliability_diagram
from mlcore.predict import predict_split
from mlcore.stages.paths import CALIBRATOR_PATH, METRICS_DIR, MODEL_PATH, PLOTS_DIR, PREPARED_DIR

log = logging.getLogger(__name__)


def run(params: Params) -> None:
    bins = params.calibrate.ece_bins
    split = predict_split(load_model(MODEL_PATH), PREPARED_DIR, "calibration", params.train.batch_size)
    calibrator = fit_calibrator(params.calibrate.method, split.probabilities, split.labels)
    calibrated = apply_calibrator(calibrator, split.probabilities)
    metrics = {
        "method": calibrator["method"],
        "pixels": int(split.labels.size),
        "ece_before": expected_calibration_error(split.probabilities, split.labels, bins),
        "ece_after": expected_calibration_error(calibrated, split.labels, bins),
    }
    if calibrator["method"] == "temperature":
        metrics["temperature"] = calibrator["temperature"]
    reliability_diagram(
        {
            "raw": reliability_bins(split.probabilities, split.labels, bins),
            "calibrated": reliability_bins(calibrated, split.labels, bins),
        },
        "Reliability on the calibration split",
        PLOTS_DIR / "calibrate" / "reliability.png",
    )
    write_json(METRICS_DIR / "calibrate.json", metrics)
    write_json(CALIBRATOR_PATH, calibrator)
    log.info("calibration: %s", metrics)

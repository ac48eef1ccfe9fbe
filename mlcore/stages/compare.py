"""compare: the champion (models/champion) scored on the test split exactly as evaluate scored the candidate, and
the decision whether the candidate may replace it (params.yaml release.champion), with both scores and hashes."""

from __future__ import annotations

import logging

from mlcore.calibration import apply_calibrator
from mlcore.champion import decide
from mlcore.io import file_hexdigest, read_json, write_json
from mlcore.metrics import scores
from mlcore.model.serialize import load_model
from mlcore.params import Params
from mlcore.predict import predict_split
from mlcore.stages._common import StageError
from mlcore.stages.paths import (
    CALIBRATOR_PATH,
    CHAMPION_CALIBRATOR,
    CHAMPION_MODEL,
    CHAMPION_RECORD,
    COMPARE_PATH,
    EVALUATE_PATH,
    MODEL_PATH,
    PREPARED_DIR,
)

log = logging.getLogger(__name__)


def score_champion(params: Params) -> dict:
    """Raw and calibrated metrics of the champion on this run's test split."""

    model = load_model(CHAMPION_MODEL)
    size = read_json(PREPARED_DIR / "manifest.json")["image_size"]
    if tuple(model.input_shape[1:3]) not in ((size, size), (None, None)):
        raise StageError(
            f"the champion takes {model.input_shape[1]} px images, this run's test split has {size} px: "
            "they cannot be compared. Release deliberately with `make release`"
        )
    test = predict_split(model, PREPARED_DIR, "test", params.train.batch_size)
    calibrated = apply_calibrator(read_json(CHAMPION_CALIBRATOR), test.probabilities)
    bins = params.calibrate.ece_bins
    return {"raw": scores(test.probabilities, test.labels, bins), "calibrated": scores(calibrated, test.labels, bins)}


def run(params: Params) -> None:
    record = read_json(CHAMPION_RECORD)
    evaluation = read_json(EVALUATE_PATH)
    challenger = {
        "model_sha256": file_hexdigest(MODEL_PATH),
        "calibrator_sha256": file_hexdigest(CALIBRATOR_PATH),
        "metrics": {key: evaluation[key] for key in ("raw", "calibrated")},
    }
    champion = None
    if record["version"] is not None:
        champion = {
            "version": record["version"],
            "commit": record["commit"],
            "model_sha256": file_hexdigest(CHAMPION_MODEL),
            "calibrator_sha256": file_hexdigest(CHAMPION_CALIBRATOR),
            "metrics": score_champion(params),
        }
    rule = params.release.champion
    decision = decide(
        rule.metric, rule.tolerance, challenger["metrics"], champion and champion["metrics"], record["version"] or ""
    )
    write_json(
        COMPARE_PATH,
        {
            "metric": rule.metric,
            "tolerance": rule.tolerance,
            "test_images": evaluation["test_images"],
            "challenger": challenger,
            "champion": champion,
            "promote": decision.promote,
            "reason": decision.reason,
        },
    )
    log.info("%s: %s", "promote" if decision.promote else "keep the champion", decision.reason)

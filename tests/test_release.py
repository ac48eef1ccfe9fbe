"""The release stage's gate and export: a failed gate prints every metric against its bound, exits non-zero
and exports nothing; the calibration folded into the SavedModel equals the pipeline's calibrator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcore.calibration import apply_calibrator, fit_calibrator
from tests.helpers import copy_project, run, write_params

pytestmark = pytest.mark.slow  # trains, serves or moves real data: `make test-fast` skips it


def test_failed_gate_prints_the_table_exits_non_zero_and_exports_nothing(tmp_path):
    project = copy_project(tmp_path / "project")
    (project / "metrics").mkdir(exist_ok=True)
    scores = {"mean_iou": 0.8, "pixel_accuracy": 0.95, "ece": 0.01, "per_class": {"pet": {"iou": 0.75}}}
    (project / "metrics" / "evaluate.json").write_text(json.dumps({"calibrated": scores}))
    attacked = {"eps_2": {"calibrated": {"mean_iou": 0.31}}}
    (project / "metrics" / "robustness.json").write_text(json.dumps({"attacks": {"pgd": attacked}}))
    robust = {"attack": "pgd", "epsilon": 2, "value": 0.5}
    write_params(
        project,
        {
            "release": {
                "gate": {
                    "min_mean_iou": 0.99,
                    "min_pet_iou": 0.0,
                    "min_pixel_accuracy": 0.0,
                    "max_ece": 0.0001,
                    "min_robust_mean_iou": robust,
                }
            }
        },
    )
    result = run(project, "python", "-m", "mlcore.stages", "release", check=False)
    assert result.returncode != 0
    failed = "calibrated mean IoU, calibrated ECE, calibrated mean IoU, PGD eps 2/255"
    assert f"release gate failed ({failed}); nothing exported" in result.stderr
    table = result.stdout.splitlines()
    assert table[0].split() == ["metric", "bound", "value", "verdict"]
    assert any(line.startswith("calibrated mean IoU") and ">= 0.99" in line and line.endswith("FAIL") for line in table)
    assert any(line.startswith("calibrated pet IoU") and line.endswith("pass") for line in table)
    assert table[-1].split() == ["calibrated", "mean", "IoU,", "PGD", "eps", "2/255", ">=", "0.5", "0.3100", "FAIL"]
    assert not (project / "release").exists()


@pytest.mark.parametrize("method", ["temperature", "isotonic"])
def test_calibration_in_the_saved_model_equals_the_calibrator(method):
    import tensorflow as tf

    from mlcore.export import calibrate

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 16, 16, 3)).astype(np.float32) * 3
    probabilities = tf.nn.softmax(logits).numpy()
    labels = rng.integers(0, 3, (4, 16, 16))
    calibrator = fit_calibrator(method, probabilities, labels)
    expected = apply_calibrator(calibrator, probabilities)
    np.testing.assert_allclose(calibrate(tf.constant(probabilities), calibrator).numpy(), expected, atol=2e-5)

import numpy as np
import pytest

from mlcore.calibration import apply_calibrator, fit_calibrator
from mlcore.metrics import confusion_matrix, expected_calibration_error, segmentation_metrics


def test_metrics_match_hand_computed_values():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    confusion = confusion_matrix(labels, predicted)
    assert confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    metrics = segmentation_metrics(confusion)
    assert metrics["pixel_accuracy"] == pytest.approx(4 / 6)
    # pet: TP 2, FP 0, FN 1 -> IoU 2/3, Dice 4/5; background: TP 1, FP 1, FN 1 -> 1/3, 1/2; border: 1/2, 2/3
    assert metrics["per_class"]["pet"]["iou"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["background"]["iou"] == pytest.approx(1 / 3)
    assert metrics["per_class"]["border"]["iou"] == pytest.approx(1 / 2)
    assert metrics["mean_iou"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert metrics["per_class"]["pet"]["dice"] == pytest.approx(4 / 5)
    assert metrics["per_class"]["background"]["precision"] == pytest.approx(1 / 2)
    assert metrics["per_class"]["pet"]["recall"] == pytest.approx(2 / 3)


def test_absent_class_is_undefined_not_zero():
    metrics = segmentation_metrics(confusion_matrix(np.array([0, 1]), np.array([0, 1])))
    assert metrics["per_class"]["border"]["iou"] is None
    assert metrics["mean_iou"] == 1.0


def test_ece_matches_hand_computed_value():
    # two pixels at confidence 0.9 (one right), two at 0.6 (both right); 10 bins
    probabilities = np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.6, 0.4, 0.0]])
    labels = np.array([0, 1, 0, 0])
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
    assert expected_calibration_error(probabilities, labels, 10) == pytest.approx(expected)


def overconfident_predictions(rng: np.random.Generator, count: int, temperature: float):
    """Labels drawn from softmax(logits); the model reports softmax(logits * temperature)."""
    logits = rng.normal(0, 2, size=(count, 3))
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in true])
    sharp = np.exp(logits * temperature)
    return (sharp / sharp.sum(axis=1, keepdims=True)).astype(np.float32), labels


def test_temperature_scaling_recovers_the_distortion_and_keeps_the_argmax():
    probabilities, labels = overconfident_predictions(np.random.default_rng(0), 20000, 2.0)
    calibrator = fit_calibrator("temperature", probabilities, labels)
    assert calibrator["temperature"] == pytest.approx(2.0, rel=0.1)
    calibrated = apply_calibrator(calibrator, probabilities)
    assert np.allclose(calibrated.sum(axis=-1), 1.0, atol=1e-5)
    assert (calibrated.argmax(-1) == probabilities.argmax(-1)).all()
    assert (
        expected_calibration_error(calibrated, labels, 15) < expected_calibration_error(probabilities, labels, 15) / 3
    )


def test_isotonic_calibration_lowers_ece_and_keeps_a_distribution():
    probabilities, labels = overconfident_predictions(np.random.default_rng(1), 20000, 2.5)
    calibrator = fit_calibrator("isotonic", probabilities, labels)
    calibrated = apply_calibrator(calibrator, probabilities.reshape(100, 200, 3))
    assert calibrated.shape == (100, 200, 3)
    assert np.allclose(calibrated.sum(axis=-1), 1.0, atol=1e-5)
    before = expected_calibration_error(probabilities, labels, 15)
    assert expected_calibration_error(calibrated.reshape(-1, 3), labels, 15) < before / 2


def test_calibrators_are_deterministic():
    probabilities, labels = overconfident_predictions(np.random.default_rng(2), 5000, 1.5)
    for method in ("temperature", "isotonic"):
        assert fit_calibrator(method, probabilities, labels) == fit_calibrator(method, probabilities, labels)

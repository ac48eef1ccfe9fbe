"""The numerics probe (mlcore/numerics_probe.py, `make probe`): on a hardware class the repository has a
record of, every operation's hash must match it exactly; on a new class the probe writes the class's record
(commit it) and prints which operations differ from every known class."""

import json
import shutil

import pytest

from mlcore.hardware import class_id, describe
from mlcore.ops.probe import RECORDS, compare
from mlcore.ops.replay import EQUIVALENT, hardware_verdict
from mlcore.stages.paths import EVALUATE_PATH, PROVENANCE_PATH
from tests.helpers import REPO_ROOT, run


@pytest.mark.slow
def test_this_machine_matches_its_hardware_class_record(tmp_path):
    result = run(REPO_ROOT, "python", "-m", "mlcore.ops.probe")  # exits non-zero on a mismatch with its own class
    record = REPO_ROOT / RECORDS / f"{class_id(describe())}.json"
    assert record.is_file()
    assert "matches" in result.stdout or "new hardware class" in result.stdout, result.stdout
    hashes = json.loads(record.read_text())["hashes"]
    assert len(hashes) > 300 and any(op.endswith("/model/adam_step") for op in hashes)


def test_compare_names_every_operation_that_differs():
    assert compare({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}) == ["b", "c"]


def retrained_clone(tmp_path, recorded_hardware: dict, recomputed_mean_iou: float):
    """What `replay --retrain` has in hand when the bits diverged: the tag's clone with its provenance, its
    params and the recomputed metrics, and the tag's own metrics beside it (expected-metrics.json)."""
    clone, workdir = tmp_path / "clone", tmp_path
    (clone / PROVENANCE_PATH).parent.mkdir(parents=True)
    (clone / PROVENANCE_PATH).write_text(json.dumps({"environment": {"hardware": recorded_hardware}}))
    shutil.copy(REPO_ROOT / "params.yaml", clone / "params.yaml")
    tag = {"mean_iou": 0.84, "pixel_accuracy": 0.95, "ece": 0.01, "per_class": {"pet": {"iou": 0.9}}}
    (workdir / "expected-metrics.json").write_text(json.dumps({"calibrated": tag}))
    (clone / EVALUATE_PATH).parent.mkdir()
    (clone / EVALUATE_PATH).write_text(json.dumps({"calibrated": {**tag, "mean_iou": recomputed_mean_iou}}))
    return clone, workdir


def intel_machine() -> dict:
    hardware = describe()
    hardware["cpu"] = {**hardware["cpu"], "vendor": "GenuineIntel", "family": "6", "model_id": "9999"}  # none such
    return hardware


def test_a_retrain_on_another_hardware_class_is_judged_by_the_metric_tolerance(tmp_path, capsys):
    """A tag recorded on another hardware class: bit-identity is not expected there, so the test metrics decide,
    within params.yaml replay.tolerance (calibrated mean IoU: 0.02). The retrain itself, and the exit status
    it takes from this verdict, run end to end in test_replay.py."""
    assert hardware_verdict(*retrained_clone(tmp_path / "close", intel_machine(), 0.83)) == EQUIVALENT
    printed = capsys.readouterr().out
    assert "other hardware: bit-identity is not expected" in printed and "EQUIVALENT on other hardware" in printed
    assert "calibrated.mean_iou" in printed
    assert hardware_verdict(*retrained_clone(tmp_path / "far", intel_machine(), 0.80)) == 1
    assert "DIVERGED: metrics outside params.yaml replay.tolerance" in capsys.readouterr().out


def test_a_diverged_retrain_on_the_tags_own_hardware_class_is_a_bug(tmp_path, capsys):
    assert hardware_verdict(*retrained_clone(tmp_path, describe(), 0.84)) == 1
    assert "MISMATCH on the tag's own hardware class" in capsys.readouterr().out

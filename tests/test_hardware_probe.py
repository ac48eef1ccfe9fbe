"""The numerics probe (mlcore/numerics_probe.py, `make probe`): on a hardware class the repository has a
record of, every operation's hash must match it exactly; on a new class the probe writes the class's record
(commit it) and prints which operations differ from every known class."""

import json

import pytest

from mlcore.hardware import class_id, describe
from mlcore.ops.probe import RECORDS, compare
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

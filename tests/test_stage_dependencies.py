"""Every stage depends in dvc.yaml on exactly the project code it imports, so editing code re-runs exactly the
stages that run it, and dvc.lock never describes outputs the code no longer makes."""

import pytest
import yaml

from tests.helpers import REPO_ROOT
from tests.stage_imports import PACKAGES, code_deps, import_closure

STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_code_deps_are_the_import_closure(stage):
    spec = STAGES[stage]
    declared = sorted(dep for dep in spec["deps"] if dep.startswith(PACKAGES))
    wanted = code_deps(spec["cmd"])
    missing, extra = sorted(set(wanted) - set(declared)), sorted(set(declared) - set(wanted))
    assert declared == wanted, f"dvc.yaml stage {stage}: missing deps {missing}, deps it does not import {extra}"


def test_the_closure_follows_function_level_and_relative_imports():
    closure = import_closure("mlcore.stages.calibrate")
    assert {
        "mlcore/stages/calibrate.py",
        "mlcore/model/unet.py",
        "mlcore/data/tfrecords.py",
        "mlcore/params.py",
        "mlcore/stages/_common.py",
    } <= closure
    assert "mlcore/serving/app.py" not in closure and "mlcore/__init__.py" not in closure  # docstring-only

"""Every stage depends in dvc.yaml on exactly the project code it imports, so editing code re-runs exactly the
stages that run it, and dvc.lock never describes outputs the code no longer makes."""

import pytest
import yaml

from mlcore.stages.__main__ import STAGES as RUNNER_STAGES
from tests.helpers import REPO_ROOT
from tests.stage_imports import PACKAGES, code_deps, entry_modules, import_closure

STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_code_deps_are_the_import_closure(stage):
    spec = STAGES[stage]
    declared = sorted(dep for dep in spec["deps"] if dep.startswith(PACKAGES))
    wanted = code_deps(spec["cmd"])
    missing, extra = sorted(set(wanted) - set(declared)), sorted(set(declared) - set(wanted))
    assert declared == wanted, f"dvc.yaml stage {stage}: missing deps {missing}, deps it does not import {extra}"


def test_the_closure_follows_the_runner_and_function_level_imports():
    deps = code_deps("python -m mlcore.stages calibrate")
    assert {
        "mlcore/stages/__main__.py",  # the runner
        "mlcore/stages/calibrate.py",  # the stage module it imports by name
        "mlcore/stages/_common.py",  # through the runner only
        "mlcore/model",  # every code file of it: the folder
        "mlcore/data/tfrecords.py",
        "mlcore/params.py",
    } <= set(deps)
    assert "mlcore/stages/train.py" not in deps  # another stage's module is not this stage's code
    closure = import_closure("mlcore.model.serialize")
    assert "mlcore/model/losses.py" in closure  # imported inside a function
    assert "mlcore/serving/app.py" not in closure and "mlcore/__init__.py" not in closure  # docstring-only


def test_the_runner_knows_every_stage_module_and_dvc_yaml_runs_only_those():
    modules = {p.stem for p in (REPO_ROOT / "mlcore/stages").glob("*.py")} - {
        "__init__",
        "__main__",
        "_common",
        "paths",
    }
    assert set(RUNNER_STAGES) == modules
    for name, spec in STAGES.items():
        assert entry_modules(spec["cmd"])[-1].removeprefix("mlcore.stages.") in RUNNER_STAGES, name

"""The whole `dvc repro` on a tiny configuration in a fresh git repository: real DVC, real TensorFlow.

The reproduced project is the test run's shared one (tests/shared_pipeline.py); each test works on its own
copy of it, so the tests run alone and in any order. That a forced re-run gives the same bytes is shown in a
fresh clone by tests/test_replay.py (every stage after fetch) and tests/test_sample.py (fetch).
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY_OVERRIDES, VENV_BIN, run, write_params
from tests.shared_pipeline import ReleasedPipeline

pytestmark = pytest.mark.slow  # trains, serves or moves real data: `make test-fast` skips it

STAGES = ("fetch", "prepare", "train", "calibrate", "evaluate")


@pytest.fixture(scope="module")
def reproduced(tiny_release: ReleasedPipeline, tmp_path_factory) -> tuple[Path, str]:
    """A tiny project after one `dvc repro`, and what that repro printed."""
    root, _ = tiny_release.copy(tmp_path_factory.mktemp("pipeline") / "project")
    return root, tiny_release.repro_output


@pytest.fixture
def project(tiny_release: ReleasedPipeline, tmp_path) -> Path:
    """A copy of the reproduced project (its DVC cache included) for a test to change."""
    return tiny_release.copy(tmp_path / "project")[0]


def lock(project) -> dict:
    return yaml.safe_load((project / "dvc.lock").read_text())


def output_hash(project, stage: str, path: str) -> str:
    return next(o["md5"] for o in lock(project)["stages"][stage]["outs"] if o["path"] == path)


def test_too_many_bad_files_stop_prepare_and_write_nothing(project):
    write_params(project, {**TINY_OVERRIDES, "prepare": {**TINY_OVERRIDES["prepare"], "max_bad_fraction": 0.01}})
    result = run(project, "dvc", "repro", "prepare", check=False)
    assert result.returncode != 0
    assert "3 of 60 images unusable (5.0% > prepare.max_bad_fraction 1.0%)" in result.stderr
    assert "images/Siamese_2.jpg: missing_trimap" in result.stderr
    assert "cmyk" not in result.stderr  # converted files are fine and not listed as failures
    assert not (project / "data/prepared").exists()
    assert [p.name for p in (project / "data").iterdir() if p.name.startswith(".prepared")] == []
    write_params(project, TINY_OVERRIDES)


def test_repro_runs_every_stage_and_reports_metrics(reproduced):
    project, printed = reproduced
    for stage in STAGES:
        assert f"Running stage '{stage}'" in printed
    evaluation = json.loads((project / "metrics/evaluate.json").read_text())
    for model in ("raw", "calibrated", "baseline_majority_class"):
        assert {"pixel_accuracy", "mean_iou", "mean_dice", "ece", "per_class"} <= set(evaluation[model])
    calibration = json.loads((project / "metrics/calibrate.json").read_text())
    assert calibration["method"] == "temperature" and calibration["temperature"] > 0
    report = json.loads((project / "data/prepared/report.json").read_text())
    assert report["summary"]["quarantined"] >= 1  # the sample plants the real set's defects
    shown = run(project, "dvc", "metrics", "show", "--json").stdout
    assert "calibrated" in shown and "ece_after" in shown
    for plot in ("plots/evaluate/predictions.png", "plots/calibrate/reliability.png", "plots/evaluate/confusion.json"):
        assert (project / plot).stat().st_size > 0


def test_second_repro_is_a_no_op(reproduced):
    project, _ = reproduced
    before = (project / "dvc.lock").read_text()
    result = run(project, "dvc", "repro")
    assert "Running stage" not in result.stdout
    assert (project / "dvc.lock").read_text() == before


def test_training_uses_the_searched_configuration(reproduced):
    project, _ = reproduced
    stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert any(dep["path"] == "tuning/best.json" for dep in stages["train"]["deps"])
    assert {name.split("@")[0] for name in stages} >= {"plan", "rung0", "rung1", "select"}
    best = json.loads((project / "tuning/best.json").read_text())
    planned = json.loads((project / "tuning/plan.json").read_text())["trials"]
    assert best["config"] == planned[best["trial"]]["config"]


def test_killed_training_resumes_to_the_same_bytes(project):
    uninterrupted = output_hash(project, "train", "models/model.keras")  # the shared project's own training
    state = project / ".cache/checkpoints/train/state.json"
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        ["dvc", "repro", "--force", "-s", "train"],  # forced: neither dvc.lock nor the run-cache stands in for it
        cwd=project,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not state.exists():
        assert process.poll() is None, "training finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    interrupted_at = json.loads(state.read_text())["epoch"]
    assert 1 <= interrupted_at < TINY_OVERRIDES["train"]["epochs"]

    result = run(project, "dvc", "repro", "--force", "-s", "train")
    assert f"resuming from the checkpoint of epoch {interrupted_at}" in result.stderr
    assert not state.exists()  # checkpoints are dropped once a training completes
    assert output_hash(project, "train", "models/model.keras") == uninterrupted

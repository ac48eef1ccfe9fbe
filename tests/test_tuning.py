"""The search: a plan that is a pure function of the seed, successive halving by ranking, a deterministic
choice with ties broken by trial id, and a real tiny search (2 trials, then the best 1) run by `dvc repro`."""

from __future__ import annotations

import json

import pytest

from mlcore.io import canonical_json
from mlcore.params import ParamsError, load_params
from mlcore.tuning import KNOBS, apply, defaults, plan, rank, select, trial_for_slot
from tests.helpers import REPO_ROOT, TINY_OVERRIDES, run, write_params

PARAMS = load_params(REPO_ROOT / "params.yaml")


def test_plan_is_a_pure_function_of_seed_and_space():
    first = plan(PARAMS.tune, defaults(PARAMS))
    assert canonical_json(first) == canonical_json(plan(PARAMS.tune, defaults(PARAMS)))
    assert len(first) == PARAMS.tune.trials
    assert first[0] == defaults(PARAMS)  # include_defaults: the configuration to beat is trial 0
    other_seed = PARAMS.tune.revised(seed=PARAMS.tune.seed + 1)
    assert plan(other_seed, defaults(PARAMS))[1:] != first[1:]
    space = PARAMS.tune.space
    for config in first[1:]:
        assert set(config) == set(KNOBS)
        assert space.learning_rate.low <= config["learning_rate"] <= space.learning_rate.high
        assert config["batch_size"] in space.batch_size and config["loss"] in space.loss


def test_apply_overrides_only_the_searched_knobs():
    config = {
        "encoder": "vgg19",
        "learning_rate": 0.001,
        "batch_size": 4,
        "encoder_trainable": False,
        "loss": "cross_entropy+dice",
    }
    tuned = apply(PARAMS, config, epochs=2)
    assert tuned.model.encoder == "vgg19" and not tuned.model.encoder_trainable
    assert (tuned.train.learning_rate, tuned.train.batch_size, tuned.train.epochs) == (0.001, 4, 2)
    assert tuned.model.decoder_filters == PARAMS.model.decoder_filters and tuned.data == PARAMS.data


def result(trial: int, score: float | None) -> dict:
    return {"trial": trial, "val_mean_iou": score}


def test_ranking_breaks_ties_by_trial_id_and_puts_failed_trials_last():
    results = [result(3, 0.5), result(1, 0.7), result(2, 0.7), result(0, None), result(4, float("nan"))]
    assert [r["trial"] for r in rank(results)] == [1, 2, 3, 0, 4]
    assert [trial_for_slot(1, slot, results) for slot in (0, 1)] == [1, 2]
    assert trial_for_slot(0, 3, []) == 3
    assert select([results, [result(2, 0.8), result(1, 0.8)]])["trial"] == 1


@pytest.mark.parametrize(
    ("rungs", "message"),
    [
        ([{"epochs": 1, "slots": [0, 1]}, {"epochs": 2, "slots": [0, 1]}], "must keep fewer trials"),
        ([{"epochs": 2, "slots": [0, 1]}, {"epochs": 2, "slots": [0]}], "epochs must exceed"),
        ([{"epochs": 1, "slots": [1, 2]}], "slots must be 0..1 in order"),
    ],
)
def test_invalid_rungs_are_refused_before_any_work(tmp_path, rungs, message):
    project = tmp_path / "project"
    project.mkdir()
    write_params(project, {"tune": {"rungs": rungs}})
    with pytest.raises(ParamsError, match=message):
        load_params(project / "params.yaml")


def outputs(project) -> dict[str, bytes]:
    tuning = sorted(p for p in (project / "tuning").rglob("*.json"))
    return {str(p.relative_to(project)): p.read_bytes() for p in tuning} | {
        "metrics/tune.json": (project / "metrics/tune.json").read_bytes(),
        "plots/tune/scores.csv": (project / "plots/tune/scores.csv").read_bytes(),
    }


@pytest.mark.slow
def test_tiny_search_runs_end_to_end_and_reruns_byte_for_byte(tiny_release, tmp_path):
    """The search of the test run's tiny project (TINY_OVERRIDES: 2 trials of 1 epoch, then the best 1 for 2)."""
    project, _ = tiny_release.copy(tmp_path / "project")
    first = outputs(project)
    tuning = project / "tuning"
    rungs = TINY_OVERRIDES["tune"]["rungs"]
    rung0, rung1 = (
        [json.loads((tuning / f"rung{r}" / f"slot{s}.json").read_text()) for s in rung["slots"]]
        for r, rung in enumerate(rungs)
    )
    assert [r["trial"] for r in rung0] == [0, 1] and {r["epochs"] for r in rung0} == {1}
    assert [r["trial"] for r in rung1] == [r["trial"] for r in rank(rung0)[:1]]  # the best half continues
    assert all(len(r["curve"]) == 2 and r["curve"][-1] == r["val_mean_iou"] for r in rung1)
    best = json.loads((tuning / "best.json").read_text())
    assert best["trial"] == rank(rung1)[0]["trial"] and best["rung"] == 1
    summary = json.loads((project / "metrics/tune.json").read_text())
    assert summary["trials_per_rung"] == [2, 1] and summary["best_trial"] == best["trial"]
    assert (project / "plots/tune/scores.csv").read_text().count("\n") == 1 + 2 + 1

    lock = (project / "dvc.lock").read_bytes()
    # the same params again: the plan and the selection come out byte for byte (the trials: test_replay's retrain)
    run(project, "dvc", "repro", "--force", "--single-item", "plan", "select")
    assert outputs(project) == first and (project / "dvc.lock").read_bytes() == lock

"""Hyperparameter search as a static graph: a seeded plan, rungs of trials, a deterministic choice.

The plan is drawn before any trial runs (Optuna's seeded RandomSampler over the declared space), so it
is a pure function of params.yaml and every trial can be its own DVC stage and Argo pod. Successive
halving (the synchronous form of ASHA) then needs only a ranking: rung r's slot s trains the trial
ranked s-th in rung r-1, with rung r's larger budget. Ties are broken by trial id, NaN ranks last.
"""

from __future__ import annotations

import math

from mlcore.params import Params, SearchSpace, TuneParams

KNOBS = ("encoder", "learning_rate", "batch_size", "encoder_trainable", "loss")
Config = dict[str, object]
Result = dict[str, object]  # {"trial", "rung", "slot", "epochs", "config", "val_mean_iou", "curve"}


def defaults(params: Params) -> Config:
    """params.yaml's own values of the searched knobs."""
    return {
        "encoder": params.model.encoder,
        "learning_rate": params.train.learning_rate,
        "batch_size": params.train.batch_size,
        "encoder_trainable": params.model.encoder_trainable,
        "loss": params.train.loss,
    }


def _distributions(space: SearchSpace) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return {
        "encoder": CategoricalDistribution(space.encoder),
        "learning_rate": FloatDistribution(space.learning_rate.low, space.learning_rate.high, log=True),
        "batch_size": CategoricalDistribution(space.batch_size),
        "encoder_trainable": CategoricalDistribution(space.encoder_trainable),
        "loss": CategoricalDistribution(space.loss),
    }


def plan(tune: TuneParams, baseline: Config) -> list[Config]:
    """tune.trials configurations, the same for the same seed and space; trial 0 is the baseline if asked."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=tune.seed))
    configs = [dict(baseline)] if tune.include_defaults else []
    distributions = _distributions(tune.space)
    while len(configs) < tune.trials:
        drawn = study.ask(distributions).params
        drawn["learning_rate"] = float(f"{drawn['learning_rate']:.4g}")  # readable, and exact in JSON
        configs.append({knob: drawn[knob] for knob in KNOBS})
    return configs


def apply(params: Params, config: Config, epochs: int | None = None) -> Params:
    """params with a trial's configuration (and, for a trial, its rung's epoch budget), validated like
    params.yaml itself: a configuration the schema refuses (a learning rate out of range) never trains."""
    budget = {} if epochs is None else {"epochs": epochs}
    return params.revised(
        model=params.model.revised(**{k: config[k] for k in ("encoder", "encoder_trainable")}),
        train=params.train.revised(**{k: config[k] for k in ("learning_rate", "batch_size", "loss")}, **budget),
    )


def _score(result: Result) -> float:
    value = result["val_mean_iou"]
    return -math.inf if value is None or math.isnan(value) else float(value)


def rank(results: list[Result]) -> list[Result]:
    """Best first: higher validation mean IoU, then lower trial id."""
    return sorted(results, key=lambda r: (-_score(r), r["trial"]))


def trial_for_slot(rung: int, slot: int, previous: list[Result]) -> int:
    """Rung 0 runs trial `slot`; a later rung runs the slot-th best trial of the rung before."""
    if rung == 0:
        return slot
    ranked = rank(previous)
    if slot >= len(ranked):
        raise ValueError(f"rung {rung} slot {slot}: rung {rung - 1} has only {len(ranked)} results")
    return int(ranked[slot]["trial"])


def select(rungs: list[list[Result]]) -> Result:
    """The best trial of the last rung: it was trained with the largest budget."""
    return rank(rungs[-1])[0]

"""plan: draw the search's trial configurations from tune.seed and tune.space into tuning/plan.json."""

from __future__ import annotations

from mlcore.io import write_json
from mlcore.params import Params
from mlcore.stages.paths import PLAN_PATH
from mlcore.tuning import defaults, plan


def run(params: Params) -> None:
    configs = plan(params.tune, defaults(params))
    write_json(
        PLAN_PATH, {"seed": params.tune.seed, "trials": [{"trial": i, "config": c} for i, c in enumerate(configs)]}
    )
    print(f"{PLAN_PATH}: {len(configs)} trials")

"""trial: one short training of one planned configuration, scored on the validation split.

`python -m mlcore.stages trial --rung R --slot S`: rung 0 slot S trains trial S; a later rung's slot S
trains the S-th best trial of the rung before, for this rung's epoch budget. The output is small:
the configuration, the validation mean IoU and its curve per epoch (no weights).
"""

from __future__ import annotations

import math
import sys

from mlcore.io import read_json, write_json
from mlcore.model.unet import unet_builder
from mlcore.params import Params
from mlcore.stages._common import StageError, read_rung
from mlcore.stages.paths import PLAN_PATH, PREPARED_DIR, trial_result_path
from mlcore.training import train
from mlcore.tuning import apply, trial_for_slot


def run(params: Params, rung: int, slot: int) -> None:
    if rung >= len(params.tune.rungs) or slot not in params.tune.rungs[rung].slots:
        raise StageError(f"rung {rung} slot {slot} is not in params.yaml tune.rungs; fix dvc.yaml's matrix")

    trial = trial_for_slot(rung, slot, read_rung(rung - 1) if rung else [])
    config = read_json(PLAN_PATH)["trials"][trial]["config"]
    epochs = params.tune.rungs[rung].epochs
    tuned = apply(params, config, epochs)
    manifest = read_json(PREPARED_DIR / "manifest.json")
    print(f"rung {rung} slot {slot}: trial {trial}, {epochs} epoch(s), {config}", file=sys.stderr)
    _, history = train(
        unet_builder(tuned.model, manifest["image_size"]),
        PREPARED_DIR,
        manifest["splits"]["train"]["count"],
        tuned.train,
        tuned.seed,
        checkpoints=None,
    )
    curve = [None if math.isnan(r["val_mean_iou"]) else r["val_mean_iou"] for r in history]  # a diverged trial
    write_json(
        trial_result_path(rung, slot),
        {
            "trial": trial,
            "rung": rung,
            "slot": slot,
            "epochs": epochs,
            "config": config,
            "val_mean_iou": curve[-1],
            "curve": curve,
        },
    )

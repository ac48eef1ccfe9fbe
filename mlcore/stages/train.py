"""train: fit the U-Net on the train split (validated on the validation split) and save models/model.keras."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dvclive import Live

from mlcore.io import read_json
from mlcore.model.serialize import save_model
from mlcore.model.unet import EncoderWeightsUnavailable, unet_builder
from mlcore.params import Params
from mlcore.stages._common import StageError
from mlcore.stages.paths import BEST_PATH, CHECKPOINT_DIR, MODEL_PATH, PREPARED_DIR, TENSORBOARD_DIR, TRAIN_LIVE_DIR
from mlcore.storage.checkpoints import S3Mirror
from mlcore.training import CheckpointStore, train
from mlcore.tuning import apply


def input_fingerprint(params: Params, prepared_dir: Path) -> str:
    """Everything the weights depend on: training settings and the prepared bytes."""
    digest = hashlib.sha256()
    relevant = params.model_dump(mode="json", include={"seed", "runtime", "model", "train"})
    digest.update(repr(sorted(relevant.items())).encode())
    for path in sorted(prepared_dir.iterdir()):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def run(params: Params) -> None:
    """Train params.yaml's model with the configuration the search selected (tuning/best.json)."""
    params = apply(params, read_json(BEST_PATH)["config"])
    manifest = read_json(PREPARED_DIR / "manifest.json")
    build = unet_builder(params.model, manifest["image_size"])
    fingerprint = input_fingerprint(params, PREPARED_DIR)
    checkpoints = CheckpointStore(CHECKPOINT_DIR, fingerprint, S3Mirror.from_environment(f"train/{fingerprint}"))
    try:
        model, history = train(
            build,
            PREPARED_DIR,
            manifest["splits"]["train"]["count"],
            params.train,
            params.seed,
            checkpoints,
            TENSORBOARD_DIR,
        )
    except EncoderWeightsUnavailable as exc:
        raise StageError(str(exc)) from exc
    save_model(model, MODEL_PATH)
    with Live(str(TRAIN_LIVE_DIR), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for record in history:
            for name, value in record.items():
                live.log_metric(name.replace("val_", "val/") if name.startswith("val_") else f"train/{name}", value)
            live.next_step()
    checkpoints.clear()  # the run is complete; a forced re-run must retrain, not resume

"""champion: the model in prod when the run started (pinned in pins.yaml), copied into models/champion by md5 from
the DVC cache or remote; with no model in prod, only its (empty) record."""

from __future__ import annotations

from mlcore.io import atomic_dir, canonical_json
from mlcore.params import Params
from mlcore.pins import load_pins
from mlcore.stages._common import StageError
from mlcore.stages.paths import CHAMPION_CALIBRATOR, CHAMPION_DIR, CHAMPION_MODEL, CHAMPION_RECORD
from mlcore.storage.content import ContentError, fetch_by_md5


def run(params: Params) -> None:
    pin = load_pins().champion
    with atomic_dir(CHAMPION_DIR) as staging:
        if pin.version is not None:
            try:
                fetch_by_md5(pin.model_md5, staging / CHAMPION_MODEL.name)
                fetch_by_md5(pin.calibrator_md5, staging / CHAMPION_CALIBRATOR.name)
            except ContentError as exc:
                raise StageError(f"champion {pin.version}: {exc}") from exc
        (staging / CHAMPION_RECORD.name).write_text(canonical_json(pin.model_dump(mode="json")))

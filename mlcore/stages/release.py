"""release: the quality gate, then the export: SavedModel (calibration folded in), model.keras, the
calibrator, a model card and release.json. On a failed gate it prints every metric against its
threshold, exits non-zero and writes nothing. The release record and the card carry the comparison with the
model in prod (metrics/compare.json): `promote` says whether the registry may assign it prod."""

from __future__ import annotations

import shutil

from mlcore.data.oxford import CLASS_NAMES
from mlcore.export import export_saved_model
from mlcore.gate import check_gate, format_table
from mlcore.io import atomic_dir, canonical_json, file_hexdigest, read_json
from mlcore.model.serialize import load_model
from mlcore.model_card import render
from mlcore.params import Params
from mlcore.stages._common import StageError
from mlcore.stages.paths import (
    BEST_PATH,
    CALIBRATOR_PATH,
    COMPARE_PATH,
    EVALUATE_PATH,
    MODEL_PATH,
    PREPARED_DIR,
    RELEASE_DIR,
    ROBUSTNESS_PATH,
)


def run(params: Params) -> None:
    evaluation = read_json(EVALUATE_PATH)
    robustness = read_json(ROBUSTNESS_PATH)
    checks = check_gate(evaluation, robustness, params.release.gate)
    print(format_table(checks))
    if not all(check.passed for check in checks):
        failed = ", ".join(c.metric for c in checks if not c.passed)
        raise StageError(
            f"release gate failed ({failed}); nothing exported. Improve the model or change "
            "params.yaml release.gate deliberately"
        )

    manifest = read_json(PREPARED_DIR / "manifest.json")
    calibrator = read_json(CALIBRATOR_PATH)
    comparison = read_json(COMPARE_PATH)
    release = {
        "model_name": params.release.model_name,
        "image_size": manifest["image_size"],
        "class_names": list(CLASS_NAMES),
        "model_sha256": file_hexdigest(MODEL_PATH),
        "calibrator_sha256": file_hexdigest(CALIBRATOR_PATH),
        "calibrator": calibrator,
        "gate": [{"metric": c.metric, "bound": c.bound, "threshold": c.threshold, "value": c.value} for c in checks],
        "metrics": evaluation["calibrated"],
        "robustness": robustness["strongest"],
        "tuning": read_json(BEST_PATH),
        "champion": comparison["champion"],
        "promote": comparison["promote"],
        "decision": comparison["reason"],
    }
    with atomic_dir(RELEASE_DIR) as staging:
        export_saved_model(load_model(MODEL_PATH), calibrator, manifest["image_size"], staging / "saved_model")
        shutil.copyfile(MODEL_PATH, staging / "model.keras")
        shutil.copyfile(CALIBRATOR_PATH, staging / "calibrator.json")
        (staging / "release.json").write_text(canonical_json(release))
        (staging / "MODEL_CARD.md").write_text(render(release, evaluation, robustness, manifest))
    print(f"{RELEASE_DIR}: released {params.release.model_name} (model sha256 {release['model_sha256'][:12]})")

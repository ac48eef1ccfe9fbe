"""provenance: write models/provenance.json from the final dvc.lock (run after `dvc repro`).

`python -m mlcore.stages provenance [--allow-dirty]`
"""

from __future__ import annotations

from pathlib import Path

from mlcore.hardware import describe
from mlcore.io import read_json, write_json
from mlcore.lockfile import LOCK_PATH, lock_stages
from mlcore.params import Params
from mlcore.provenance import DirtyTree, build_record
from mlcore.runtime import runtime_facts
from mlcore.stages._common import StageError
from mlcore.stages.paths import BEST_PATH, PROVENANCE_PATH


def run(params: Params, allow_dirty: bool) -> None:
    try:
        facts = runtime_facts(params.runtime)
        record = build_record(
            params, lock_stages(LOCK_PATH.read_text()), Path("uv.lock"), facts, describe(), allow_dirty
        )
    except DirtyTree as exc:
        raise StageError(str(exc)) from exc
    record["tuning"] = read_json(BEST_PATH)  # the selected trial whose configuration trained the model
    write_json(PROVENANCE_PATH, record)
    model = record["stages"]["train"]["outs"]["models/model.keras"]
    print(f"{PROVENANCE_PATH}: model {model} from commit {record['source']['commit'][:12]}")

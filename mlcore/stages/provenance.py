"""provenance: write models/provenance.json from the final dvc.lock (run after `dvc repro`).

`python -m mlcore.stages.provenance [--allow-dirty]`
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlcore.hardware import describe
from mlcore.io import read_json, write_json
from mlcore.params import Params
from mlcore.provenance import DirtyTree, build_record
from mlcore.runtime import pin_runtime, runtime_facts
from mlcore.stages._common import StageError, run_stage
from mlcore.stages.paths import BEST_PATH, PROVENANCE_PATH


def provenance_stage(params: Params, allow_dirty: bool) -> None:
    pin_runtime(params.runtime, params.seed)
    try:
        facts = runtime_facts(params.runtime)
        record = build_record(params, Path("dvc.lock"), Path("uv.lock"), facts, describe(), allow_dirty)
    except DirtyTree as exc:
        raise StageError(str(exc)) from exc
    record["tuning"] = read_json(BEST_PATH)  # the selected trial whose configuration trained the model
    write_json(PROVENANCE_PATH, record)
    model = record["stages"]["train"]["outs"]["models/model.keras"]
    print(f"{PROVENANCE_PATH}: model {model} from commit {record['source']['commit'][:12]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--allow-dirty", action="store_true", help="record a dirty tree instead of refusing")
    arguments = parser.parse_args()
    run_stage(lambda params: provenance_stage(params, arguments.allow_dirty))

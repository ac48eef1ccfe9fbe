"""`make probe`: fingerprint this machine's training numerics and compare them with every hardware class on
record (tests/hardware_probes/, one file per class, committed).

On a class already on record the hashes must match exactly (a difference is non-determinism: a bug) and
the command fails otherwise; on a new class it writes the class's file and prints, for each known class,
which operations differ, so records from the machines the project runs on name the operation that breaks
bit-identity between them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlcore.params import load_params

RECORDS = Path("tests/hardware_probes")


def compare(mine: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """Operations whose hashes differ (or that only one record has)."""
    return sorted(op for op in mine.keys() | theirs.keys() if mine.get(op) != theirs.get(op))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path, default=RECORDS, help="folder of <hardware class>.json records")
    arguments = parser.parse_args()
    params = load_params()
    from mlcore.runtime import pin_runtime

    pin_runtime(params.runtime, params.seed)
    from mlcore.hardware import class_id, describe
    from mlcore.numerics_probe import probe

    hardware = describe()
    name = class_id(hardware)
    record = {"hardware": hardware, "runtime": params.runtime.model_dump(), "hashes": probe(params)}
    path = arguments.records / f"{name}.json"
    print(f"hardware class {name}: {len(record['hashes'])} operations")
    if path.exists():
        known = json.loads(path.read_text())
        differing = compare(record["hashes"], known["hashes"])
        if differing:
            sys.exit(
                f"error: {len(differing)} operations differ from this class's own record {path} "
                f"(non-determinism on one hardware class: a bug): {', '.join(differing[:12])}"
            )
        print(f"matches {path} exactly")
    else:
        arguments.records.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"new hardware class: wrote {path} (commit it)")
    for other in sorted(arguments.records.glob("*.json")):
        if other != path:
            differing = compare(record["hashes"], json.loads(other.read_text())["hashes"])
            print(
                f"vs {other.stem}: {len(differing)} of {len(record['hashes'])} operations differ"
                + (f", e.g. {', '.join(differing[:8])}" if differing else "")
            )


if __name__ == "__main__":
    main()

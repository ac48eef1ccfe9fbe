"""`python -m mlcore.ops.verdict`: the end of `make run`: the release's gate table and what it means for prod."""

from __future__ import annotations

from mlcore.gate import Check, format_table
from mlcore.io import read_json
from mlcore.stages.paths import RELEASE_DIR


def print_verdict() -> None:
    release = read_json(RELEASE_DIR / "release.json")
    print(format_table([Check(**check) for check in release["gate"]]))
    print(f"release gate: PASSED; {RELEASE_DIR}/ holds {release['model_name']} (`make serve` serves it)")
    verdict = "PROMOTE" if release["promote"] else "KEEP THE CHAMPION"
    print(f"against the model in prod: {verdict}: {release['decision']}")


if __name__ == "__main__":
    print_verdict()

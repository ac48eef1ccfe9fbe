"""Wall time of each stage of the pipeline (forced, in dvc.yaml order) and of a no-op `dvc repro`.

Run from the repository root after `make run`; it re-runs every stage of the current checkout.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.timing import timed


def main() -> None:
    stages = list(yaml.safe_load(Path("dvc.yaml").read_text())["stages"])
    rows = [(stage, timed("dvc", "repro", "-f", "-s", stage)) for stage in stages]
    rows.append(("total", sum(seconds for _, seconds in rows)))
    rows.append(("no-op dvc repro", timed("dvc", "repro")))
    for name, seconds in rows:
        print(f"{name:<18} {seconds:8.1f} s")


if __name__ == "__main__":
    main()

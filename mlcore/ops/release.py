"""Register the current commit's model in the GTO registry: `model@vX.Y.Z` tag, optional stage.

`python -m mlcore.ops.release vX.Y.Z [--stage prod]`

Refuses unless the tree is clean (the tag must name the commit whose dvc.lock describes the model)
and every object of that dvc.lock is intact on the remote (a tag must always be replayable).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from mlcore.ops.verify import verify
from mlcore.provenance import uncommitted_files

ARTIFACT = "model"


def _gto(*args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "gto"), *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version", help="SemVer with a leading v, e.g. v1.0.0")
    parser.add_argument("--stage", help="also assign this stage, e.g. staging or prod")
    arguments = parser.parse_args()
    if dirty := uncommitted_files():
        sys.exit(f"error: commit dvc.lock and every change first; uncommitted: {', '.join(dirty)}")
    checked, problems = verify()
    if problems:
        sys.exit(f"error: {len(problems)} of {checked} objects are missing or altered on the remote; run `make push`")
    _gto("register", ARTIFACT, "--version", arguments.version, "-m", f"{ARTIFACT} {arguments.version}")
    if arguments.stage:
        _gto("assign", ARTIFACT, "--version", arguments.version, "--stage", arguments.stage)
    print(
        f"released {ARTIFACT}@{arguments.version}; replay it with `make reproduce REF={ARTIFACT}@{arguments.version}`"
    )


if __name__ == "__main__":
    main()

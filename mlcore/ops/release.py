"""Register the current commit's model in the GTO registry: `model@vX.Y.Z` tag, optional stage.

`python -m mlcore.ops.release vX.Y.Z [--stage prod] [--force]`

Refuses unless the tree is clean (the tag must name the commit whose dvc.lock describes the model)
and every object of that dvc.lock is intact on the remote (a tag must always be replayable). Assigning
prod is refused when the release record says the model is worse than the one in prod (the compare
stage's decision) unless --force says that is deliberate.
"""

from __future__ import annotations

import argparse
import json
import sys

from mlcore.ops.registry import ARTIFACT, PROD, RegistryError, gto
from mlcore.ops.verify import verify
from mlcore.provenance import uncommitted_files
from mlcore.stages.paths import RELEASE_DIR


class ReleaseRefused(RuntimeError):
    """The model cannot be registered as asked; the message says why and what to do."""


def register(version: str, stage: str | None = None, force: bool = False) -> None:
    if dirty := uncommitted_files():
        raise ReleaseRefused(f"commit dvc.lock and every change first; uncommitted: {', '.join(dirty)}")
    record = json.loads((RELEASE_DIR / "release.json").read_text())
    if stage == PROD and not record.get("promote", True) and not force:
        raise ReleaseRefused(f"{RELEASE_DIR}/release.json: {record['decision']}; assign {PROD} anyway with --force")
    checked, problems = verify()
    if problems:
        raise ReleaseRefused(
            f"{len(problems)} of {checked} objects are missing or altered on the remote; run `make push`"
        )
    try:
        gto("register", ARTIFACT, "--version", version, "-m", f"{ARTIFACT} {version}")
        if stage:
            gto("assign", ARTIFACT, "--version", version, "--stage", stage)
    except RegistryError as exc:
        raise ReleaseRefused(str(exc)) from exc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version", help="SemVer with a leading v, e.g. v1.0.0")
    parser.add_argument("--stage", help="also assign this stage, e.g. staging or prod")
    parser.add_argument("--force", action="store_true", help="assign prod even if the champion scored better")
    arguments = parser.parse_args()
    try:
        register(arguments.version, arguments.stage, arguments.force)
    except ReleaseRefused as exc:
        sys.exit(f"error: {exc}")
    print(
        f"released {ARTIFACT}@{arguments.version}; replay it with `make reproduce REF={ARTIFACT}@{arguments.version}`"
    )


if __name__ == "__main__":
    main()

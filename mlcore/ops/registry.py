"""The model registry (GTO: git tags `model@vX.Y.Z` for versions, `model#prod#N` for stage assignments).

`python -m mlcore.ops.registry rollback` (`make rollback`): give prod back to the version that held it before
the current one; `python -m mlcore.ops.registry show`: which version is in prod.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from mlcore import commands
from mlcore.commands import CommandFailed
from mlcore.lockfile import lock_stages
from mlcore.pins import ChampionPin
from mlcore.stages.paths import CALIBRATOR_PATH, MODEL_PATH

ARTIFACT = "model"
PROD = "prod"
VERSION_TAG = re.compile(rf"{ARTIFACT}@v(\d+)\.(\d+)\.(\d+)")


class RegistryError(RuntimeError):
    """The registry cannot do what was asked; the message says why."""


def gto(*args: str) -> None:
    """The gto command of this environment (it writes the tags); its advice on pushing is left out, its errors not."""
    try:
        commands.gto(*args)
    except CommandFailed as exc:
        raise RegistryError(f"gto {' '.join(args)}: {(exc.stderr or exc.stdout).strip()}") from None


def prod_version(repo: Path = Path(".")) -> str | None:
    return next(iter(prod_versions(repo)), None)


def next_version(repo: Path = Path(".")) -> str:
    """The highest version ever registered (deregistered ones too: their tags stay) with its minor number bumped
    (v0.1.0 -> v0.2.0); v0.1.0 for the first."""
    tags = _git(repo, "tag", "--list", f"{ARTIFACT}@v*").split()
    versions = [tuple(int(n) for n in match.groups()) for tag in tags if (match := VERSION_TAG.fullmatch(tag))]
    if not versions:
        return "v0.1.0"
    major, minor, _ = max(versions)
    return f"v{major}.{minor + 1}.0"


def _git(repo: Path, *args: str) -> str:
    try:
        return commands.git(*args, cwd=repo)
    except CommandFailed as exc:
        raise RegistryError(f"git {' '.join(args)}: {exc.stderr.strip()}") from None


def champion(repo: Path = Path(".")) -> ChampionPin:
    """The model in prod, by the md5s its tag's dvc.lock records (an empty pin when nothing is in prod)."""
    version = prod_version(repo)
    if version is None:
        return ChampionPin()
    tag = f"{ARTIFACT}@{version}"
    commit = _git(repo, "rev-parse", f"{tag}^{{commit}}")
    outputs = {
        out["path"]: out["md5"]
        for entry in lock_stages(_git(repo, "show", f"{commit}:dvc.lock")).values()
        for out in entry.get("outs", [])
    }
    missing = [str(path) for path in (MODEL_PATH, CALIBRATOR_PATH) if str(path) not in outputs]
    if missing:
        raise RegistryError(f"{tag}'s dvc.lock has no {', '.join(missing)}: it is not a model this pipeline made")
    return ChampionPin(
        version=version, commit=commit, model_md5=outputs[str(MODEL_PATH)], calibrator_md5=outputs[str(CALIBRATOR_PATH)]
    )


def prod_versions(repo: Path = Path(".")) -> list[str]:
    """Every version whose prod assignment stands, highest first: GTO serves the highest (SemVer) of them."""
    from gto.api import find_versions_in_stage
    from gto.exceptions import ArtifactNotFound

    try:
        found = find_versions_in_stage(str(repo), ARTIFACT, PROD, versions_per_stage=-1)
    except ArtifactNotFound:  # no version registered yet
        return []
    return [version.version for version in found]


def rollback(repo: Path = Path(".")) -> tuple[str, str]:
    """Take prod away from the current version (a GTO unassignment tag), so the version that held it before is in
    prod again; returns (from, to)."""
    standing = prod_versions(repo)
    if len(standing) < 2:
        raise RegistryError(f"nothing to roll back to: prod is held by {', '.join(standing) or 'no version'} alone")
    gto("deprecate", ARTIFACT, standing[0], PROD, "-m", f"rollback to {standing[1]}")  # an unassignment tag
    return standing[0], standing[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["rollback", "show"])
    arguments = parser.parse_args()
    try:
        if arguments.command == "show":
            print(f"{ARTIFACT} in {PROD}: {prod_version() or 'none'}")
            return
        current, previous = rollback()
    except RegistryError as exc:
        sys.exit(f"error: {exc}")
    print(
        f"{PROD}: {current} -> {previous}. Push the tags (`git push --tags`) and deploy it: "
        f"`make inference-service REF={ARTIFACT}@{previous} | kubectl apply -f -`"
    )


if __name__ == "__main__":
    main()

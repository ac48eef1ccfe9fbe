"""Read dvc.lock: the stage entries DVC wrote, and every output hash in pipeline order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

LOCK_PATH = Path("dvc.lock")


@dataclass(frozen=True)
class Output:
    stage: str
    path: str
    md5: str


def lock_stages(text: str) -> dict[str, dict]:
    """The stage entries of a dvc.lock's text (a file's, or a revision's from `git show REV:dvc.lock`)."""
    return (yaml.safe_load(text) or {}).get("stages", {})


def lock_outputs(lock_path: Path) -> list[Output]:
    """Every output of every stage, in dvc.lock's (pipeline) order."""
    return [
        Output(stage, out["path"], out["md5"])
        for stage, entry in lock_stages(Path(lock_path).read_text()).items()
        for out in entry.get("outs", [])
    ]

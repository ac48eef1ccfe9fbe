"""Provenance of a trained model: what code, settings, data and machine produced exactly these bytes.

The record is written after `dvc repro`, because it quotes the final dvc.lock: the hash of every
dependency and output of every stage. It refuses a dirty git tree (uncommitted code or params would
make the record name a commit that did not produce the model) unless explicitly allowed.
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

from mlcore.commands import git, run
from mlcore.params import Params
from mlcore.pins import load_pins

# What the pipeline itself writes (outputs, and the .gitignore files DVC keeps beside them, the root one
# included; pins.yaml, which `make retrain` writes before it runs); changes there do not make the tree dirty.
PIPELINE_WRITTEN = (
    "dvc.lock",
    "pins.yaml",
    "data/",
    "models/",
    "metrics/",
    "plots/",
    "dvclive/",
    "tuning/",
    "release/",
)


class DirtyTree(RuntimeError):
    """Uncommitted changes to code or params: the commit would not describe the model."""


def uncommitted_files() -> list[str]:
    """Tracked files with staged or unstaged changes."""
    status = run("git", "status", "--porcelain", "--untracked-files=no")  # not stripped: lines may start with a space
    return [line[3:] for line in status.splitlines()]


def source_revision(allow_dirty: bool) -> dict:
    changed = [p for p in uncommitted_files() if not p.startswith(PIPELINE_WRITTEN) and not p.endswith(".gitignore")]
    if changed and not allow_dirty:
        raise DirtyTree(
            f"uncommitted changes to {', '.join(changed[:5])}: commit them first, or pass --allow-dirty "
            "(the record then says the tree was dirty)"
        )
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed), "changed_files": changed}


def lock_hashes(lock_entries: dict[str, dict]) -> dict:
    """stage -> {deps: {path: hash}, outs: {path: hash}} from dvc.lock's stage entries."""
    return {
        stage: {kind: {entry["path"]: entry["md5"] for entry in entry_list.get(kind, [])} for kind in ("deps", "outs")}
        for stage, entry_list in lock_entries.items()
    }


def container_image() -> str | None:
    """Set by the Argo workflow from the pod's image (with digest); absent outside a container."""
    return os.environ.get("MLCORE_IMAGE") or None


def build_record(
    params: Params, lock_entries: dict[str, dict], uv_lock: Path, runtime: dict, hardware: dict, allow_dirty: bool
) -> dict:
    """`hardware` is mlcore.hardware.describe(): the class whose machines can reproduce these bytes."""
    from mlcore.hardware import class_id, cpu_flags

    return {
        "source": source_revision(allow_dirty),
        "params_digest": params.digest(),
        "pins": load_pins().model_dump(mode="json"),  # the inflow snapshot and the champion it was compared with
        "stages": lock_hashes(lock_entries),
        "environment": {
            **runtime,
            "uv_lock_sha256": hashlib.sha256(uv_lock.read_bytes()).hexdigest(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_flags": cpu_flags(),
            "container_image": container_image(),
            "hardware_class": class_id(hardware),
            "hardware": hardware,
        },
    }

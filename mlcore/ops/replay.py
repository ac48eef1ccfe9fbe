"""Replay a tagged model in a fresh clone with an empty cache, and prove it by hash.

`python -m mlcore.ops.replay REF [--retrain] [--repo PATH] [--keep]`

Without --retrain: fetch every output and the run-cache, let `dvc repro` restore each stage from the
cache (it fails if any stage had to be recomputed), and check every output against REF's dvc.lock.
With --retrain: pull only the fetched data (the pinned inputs), recompute every later stage, and check
that every output is byte-identical to REF's dvc.lock, naming the first stage that diverged.
The remote is read with this checkout's .dvc/config.local (credentials are never committed), and
DVC verifies each downloaded object's hash.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlcore.ops.dvc_state import Output, lock_outputs, recompute_from, stage_graph


class ReplayError(RuntimeError):
    """A step of the replay failed; the message includes DVC's or git's own words."""


def _run(cwd: Path, *command: str) -> str:
    # Stage commands say `python`: make it this environment's, whatever PATH the caller had.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PATH": path})
    if result.returncode != 0:
        raise ReplayError(f"`{' '.join(command)}` failed in {cwd}:\n{result.stdout}{result.stderr}")
    return result.stdout


def fresh_clone(repo: Path, ref: str, into: Path) -> Path:
    _run(into.parent, "git", "clone", "--quiet", "--no-checkout", str(repo.resolve()), str(into))
    _run(into, "git", "checkout", "--quiet", ref)
    local_config = repo / ".dvc" / "config.local"
    if local_config.exists():
        shutil.copy2(local_config, into / ".dvc" / "config.local")
    _run(into, sys.executable, "-m", "dvc", "config", "--local", "core.autostage", "false")
    return into


def _dvc(clone: Path, *args: str) -> str:
    return _run(clone, sys.executable, "-m", "dvc", *args)


def compare(expected: list[Output], got: list[Output]) -> list[tuple[Output, str | None]]:
    actual = {(o.stage, o.path): o.md5 for o in got}
    return [(o, actual.get((o.stage, o.path))) for o in expected]


def print_table(rows: list[tuple[Output, str | None]]) -> None:
    print(f"{'stage':<10} {'output':<44} {'expected':<36} {'got':<36} ok")
    for output, got in rows:
        mark = "yes" if got == output.md5 else "NO"
        print(f"{output.stage:<10} {output.path:<44} {output.md5:<36} {got or '-':<36} {mark}")


def first_divergence(rows: list[tuple[Output, str | None]]) -> str | None:
    diverged = [output for output, got in rows if got != output.md5]
    if diverged:
        return f"MISMATCH: first divergence in stage '{diverged[0].stage}' ({diverged[0].path})"
    return None


def replay(repo: Path, ref: str, retrain: bool, workdir: Path) -> list[tuple[Output, str | None]]:
    clone = fresh_clone(repo, ref, workdir / "clone")
    expected = lock_outputs(clone / "dvc.lock")
    if retrain:
        stages = stage_graph(clone)
        _dvc(clone, "pull", *(node.name for node in stages if node.pinned))  # the pinned data
        _dvc(clone, "repro", "--force", "--downstream", *recompute_from(stages))  # everything else, recomputed
    else:
        _dvc(clone, "fetch", "--run-cache")  # objects and run-cache into the empty cache, nothing checked out
        recomputed = re.findall(r"Running stage '([^']+)'", _dvc(clone, "repro"))
        if recomputed:  # restoring must never compute: the tag's dvc.lock does not match its code or params
            raise ReplayError(
                f"{ref}: stage(s) {', '.join(recomputed)} had to be recomputed, so its dvc.lock does not describe "
                "its code and params (commit after `make run`); use --retrain to check the outputs anyway"
            )
        _dvc(clone, "commit", "--force")  # re-hash the workspace, so the lock below is what is on disk
    return compare(expected, lock_outputs(clone / "dvc.lock"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref", help="git tag or commit, e.g. model@v1.0.0")
    parser.add_argument("--retrain", action="store_true", help="recompute every stage after fetch")
    parser.add_argument("--repo", type=Path, default=Path("."), help="repository to clone (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the clone for inspection")
    arguments = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mlcore-replay-"))
    try:
        rows = replay(arguments.repo, arguments.ref, arguments.retrain, workdir)
    except ReplayError as exc:
        sys.exit(f"error: {exc}")
    finally:
        if not arguments.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(rows)
    if message := first_divergence(rows):
        sys.exit(message)
    print(f"all {len(rows)} outputs of {arguments.ref} reproduced byte for byte")


if __name__ == "__main__":
    main()

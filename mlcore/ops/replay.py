"""Replay a tagged model in a fresh clone with an empty cache, and prove it by hash.

`python -m mlcore.ops.replay REF [--retrain] [--repo PATH] [--keep]`

Without --retrain: fetch every output and the run-cache, let `dvc repro` restore each stage from the
cache (it fails if any stage had to be recomputed), and check every output against REF's dvc.lock.
With --retrain: pull only the fetched data (the pinned inputs), recompute every later stage, and check
that every output is byte-identical to REF's dvc.lock, naming the first stage that diverged. Bits are
expected to match only on the hardware class REF's provenance records (mlcore/hardware.py): on the same
class a divergence is an error (non-determinism, a bug); on another class the replay says so and passes
when the recomputed test metrics lie within params.yaml `replay.tolerance` of REF's.

Exit status: 0 byte for byte, EQUIVALENT (3) equivalent on other hardware, 1 diverged or failed.
The remote is read with this checkout's .dvc/config.local (credentials are never committed), and
DVC verifies each downloaded object's hash.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from mlcore.commands import CommandFailed, run
from mlcore.lockfile import Output, lock_outputs
from mlcore.metrics import lookup
from mlcore.ops.dvc_state import recompute_from, stage_graph
from mlcore.stages.paths import EVALUATE_PATH, PROVENANCE_PATH

EQUIVALENT = 3  # exit status: diverged in bits on another hardware class, metrics within tolerance


class ReplayError(RuntimeError):
    """A step of the replay failed; the message includes DVC's or git's own words."""


def _run(cwd: Path, *command: str) -> str:
    try:
        return run(*command, cwd=cwd)
    except CommandFailed as exc:
        raise ReplayError(str(exc)) from None


def fresh_clone(repo: Path, ref: str, into: Path) -> Path:
    _run(into.parent, "git", "clone", "--quiet", "--no-checkout", str(repo.resolve()), str(into))
    _run(into, "git", "checkout", "--quiet", ref)
    local_config = repo / ".dvc" / "config.local"
    if local_config.exists():
        shutil.copy2(local_config, into / ".dvc" / "config.local")
    _run(into, sys.executable, "-m", "dvc", "config", "--local", "core.autostage", "false")
    return into


def dvc(clone: Path, *args: str) -> str:
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


def replay(repo: Path, ref: str, retrain: bool, workdir: Path) -> tuple[Path, list[tuple[Output, str | None]]]:
    clone = fresh_clone(repo, ref, workdir / "clone")
    expected = lock_outputs(clone / "dvc.lock")
    if retrain:
        stages = stage_graph(clone)
        dvc(clone, "pull", *(node.name for node in stages if node.pinned))  # the pinned data
        dvc(clone, "pull", str(EVALUATE_PATH))  # the tag's own test metrics, for a replay on other hardware
        (workdir / "expected-metrics.json").write_bytes((clone / EVALUATE_PATH).read_bytes())
        recomputed = re.findall(  # everything else, recomputed
            r"Running stage '([^']+)'", dvc(clone, "repro", "--force", "--downstream", *recompute_from(stages))
        )
        print(f"recomputed {len(recomputed)} stages: {', '.join(recomputed)}")
    else:
        dvc(clone, "fetch", "--run-cache")  # objects and run-cache into the empty cache, nothing checked out
        recomputed = re.findall(r"Running stage '([^']+)'", dvc(clone, "repro"))
        if recomputed:  # restoring must never compute: the tag's dvc.lock does not match its code or params
            raise ReplayError(
                f"{ref}: stage(s) {', '.join(recomputed)} had to be recomputed, so its dvc.lock does not describe "
                "its code and params (commit after `make run`); use --retrain to check the outputs anyway"
            )
        dvc(clone, "commit", "--force")  # re-hash the workspace, so the lock below is what is on disk
    return clone, compare(expected, lock_outputs(clone / "dvc.lock"))


def metric_deviations(expected: dict, got: dict, tolerance: dict[str, float]) -> list[tuple[str, float, float, bool]]:
    """(metric, expected, got, within tolerance) for every metric params.yaml replay.tolerance names."""
    rows = []
    for key, bound in sorted(tolerance.items()):
        want, have = float(lookup(expected, key)), float(lookup(got, key))
        rows.append((key, want, have, abs(have - want) <= bound))
    return rows


def hardware_verdict(clone: Path, workdir: Path) -> int:
    """After a retrain diverged: an error on the tag's own hardware class, else a metrics comparison."""
    from mlcore.hardware import class_id, describe, same_class
    from mlcore.params import load_params

    recorded = json.loads((clone / PROVENANCE_PATH).read_text())["environment"].get("hardware")
    here = describe()
    print(f"hardware class here: {class_id(here)}; the tag's: {class_id(recorded) if recorded else 'not recorded'}")
    if recorded and same_class(recorded, here):
        print("MISMATCH on the tag's own hardware class: the pipeline is not deterministic here (a bug)")
        return 1
    print("other hardware: bit-identity is not expected (see README, Determinism); comparing test metrics")
    tolerance = load_params(clone / "params.yaml").replay.tolerance
    expected = json.loads((workdir / "expected-metrics.json").read_text())
    rows = metric_deviations(expected, json.loads((clone / EVALUATE_PATH).read_text()), tolerance)
    print(f"{'metric':<32} {'tag':>10} {'here':>10} {'tolerance':>10} ok")
    for key, want, have, ok in rows:
        print(f"{key:<32} {want:>10.4f} {have:>10.4f} {tolerance[key]:>10.4f} {'yes' if ok else 'NO'}")
    if all(ok for *_, ok in rows):
        print("EQUIVALENT on other hardware: every metric within params.yaml replay.tolerance")
        return EQUIVALENT
    print("DIVERGED: metrics outside params.yaml replay.tolerance")
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref", help="git tag or commit, e.g. model@v1.0.0")
    parser.add_argument("--retrain", action="store_true", help="recompute every stage after fetch")
    parser.add_argument("--repo", type=Path, default=Path("."), help="repository to clone (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the clone for inspection")
    arguments = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mlcore-replay-"))
    try:
        clone, rows = replay(arguments.repo, arguments.ref, arguments.retrain, workdir)
        print_table(rows)
        if message := first_divergence(rows):
            print(message, file=sys.stderr)
            sys.exit(hardware_verdict(clone, workdir) if arguments.retrain else 1)
        print(f"all {len(rows)} outputs of {arguments.ref} reproduced byte for byte")
    except ReplayError as exc:
        sys.exit(f"error: {exc}")
    finally:
        if not arguments.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

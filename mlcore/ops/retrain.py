"""`make retrain [DRIFT=http://host:port/metrics]`: new samples become a data version, a challenger, a decision.

1. Pin the inflow listed up to now (less inflow.settle_s) and the model in prod (GTO) into pins.yaml; with fewer
   than inflow.min_new_samples new images, stop there and change nothing.
2. `dvc repro`: the inflow stage snapshots exactly the pinned objects, prepare merges them, the search, training,
   calibration and evaluation run, compare scores the champion on the same test split, release exports.
3. Record the run: provenance, push to the DVC remote, commit pins.yaml, dvc.lock and the provenance record
   (and the .gitignore entries DVC added for new outputs). Whatever fails before the commit is undone.
4. Promote when the release gate passed and the challenger is not worse than the champion beyond
   release.champion.tolerance: register the next version and assign it prod. A failed gate records nothing (the
   samples stay new); a challenger worse than the champion is committed, not promoted.
Then one screen of summary (with the drift report of a running server's /metrics when DRIFT is given).
Exit status 0 for nothing to do, promoted or refused; 1 when a step failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

from mlcore.commands import git, tools_environment
from mlcore.data.inflow import MANIFEST
from mlcore.data.split import SPLITS
from mlcore.metrics import lookup
from mlcore.ops.drift import DriftError, report
from mlcore.ops.dvc_state import default_remote
from mlcore.ops.registry import ARTIFACT, PROD, next_version
from mlcore.ops.release import ReleaseRefused, register
from mlcore.ops.run_record import RECORD_FILES
from mlcore.ops.snapshot import NextPins, next_pins
from mlcore.params import load_params
from mlcore.pins import load_pins, write_pins
from mlcore.provenance import uncommitted_files
from mlcore.stages.paths import COMPARE_PATH, INFLOW_DIR, PREPARED_DIR

LOG_DIR = Path("logs")


class RetrainFailed(RuntimeError):
    """A step failed; the message names it and where its output is."""


def _run(*command: str, log: Path) -> subprocess.CompletedProcess:
    """A step with this environment's tools first on PATH (stage commands say `python`), its output to `log`."""
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        return subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=tools_environment())


def _step(*command: str, log: Path) -> None:
    if _run(*command, log=log).returncode != 0:
        raise RetrainFailed(f"`{' '.join(command)}` failed; its output is in {log}")


def _discard_run(log: Path) -> None:
    """Back to the committed pins, lock and .gitignore files, and the outputs they name."""
    _run("git", "checkout", "--", "pins.yaml", "dvc.lock", *_ignore_files(), log=log)
    _run(sys.executable, "-m", "dvc", "checkout", "--force", log=log)


def _ignore_files() -> list[str]:
    """The .gitignore files DVC changed (it lists each new output in the one beside it)."""
    return [path for path in uncommitted_files() if path.endswith(".gitignore")]


def retrain(log: Path) -> dict:
    """The loop; returns what the summary shows."""
    if dirty := uncommitted_files():
        raise RetrainFailed(f"commit or discard your changes first (the run is committed): {', '.join(dirty)}")
    params = load_params()
    os.environ.update(default_remote().environment())  # the stages read the inflow and the champion there
    planned: NextPins = next_pins(params.inflow, load_pins())
    outcome = {"plan": planned.describe(params.inflow)}
    if not planned.worth_a_run(params.inflow):
        return {**outcome, "verdict": "nothing to do: too few new samples; nothing changed"}
    planned.pin_listing()
    write_pins(planned.pins)
    committed = False
    try:
        repro = _run(sys.executable, "-m", "dvc", "repro", log=log)
        if repro.returncode != 0:
            if "release gate failed" not in log.read_text():
                raise RetrainFailed(f"`dvc repro` failed; its output is in {log}; nothing was recorded")
            return {
                **outcome,
                **_results(),
                "verdict": "REFUSED by the release gate (see the log); nothing recorded, the samples stay new",
            }
        _step(sys.executable, "-m", "mlcore.stages", "provenance", log=log)
        _step(sys.executable, "-m", "mlcore.ops.remote", "check", log=log)
        _step(sys.executable, "-m", "dvc", "push", "--run-cache", log=log)
        results = _results()
        decision = "promote" if results["promote"] else "keep the champion"
        recorded = [*RECORD_FILES, *_ignore_files()]
        _step("git", "add", *recorded, log=log)
        _step(
            "git",
            "commit",
            "-q",
            "-m",
            f"retrain: {results['inflow']['taken']} new sample(s), {decision}",
            "--",
            *recorded,
            log=log,
        )
        committed = True
    finally:
        if not committed:
            _discard_run(log)
    commit = git("rev-parse", "HEAD")
    outcome = {**outcome, **results, "commit": commit}
    if not results["promote"]:
        return {**outcome, "verdict": f"REFUSED: {results['reason']}; committed {commit[:12]}, prod unchanged"}
    version = next_version()
    try:
        register(version, PROD)
    except ReleaseRefused as exc:
        raise RetrainFailed(f"committed {commit[:12]} but could not register it: {exc}") from exc
    return {
        **outcome,
        "verdict": f"PROMOTED: {results['reason']}; {ARTIFACT}@{version} is in {PROD} (`git push --tags` shares it)",
    }


def _results() -> dict:
    """What the run's outputs say: the snapshot, the data version, the comparison."""
    inflow = json.loads((INFLOW_DIR / MANIFEST).read_text())
    splits = json.loads((PREPARED_DIR / "manifest.json").read_text())["splits"]
    results = {
        "inflow": inflow["summary"],
        "quarantined": inflow["quarantined"],
        "splits": {name: (splits[name]["count"], splits[name]["inflow"]) for name in SPLITS},
    }
    if COMPARE_PATH.exists():
        comparison = json.loads(COMPARE_PATH.read_text())
        results |= {key: comparison[key] for key in ("metric", "challenger", "champion", "promote", "reason")}
    return results


def summary(outcome: dict, drift: str | None) -> str:
    lines = ["retrain summary", f"  inflow      {outcome['plan']}"]
    if "inflow" in outcome:
        counts = outcome["inflow"]
        reasons = ", ".join(f"{reason} {n}" for reason, n in counts["by_reason"].items())
        lines.append(
            f"              taken {counts['taken']}, duplicates {counts['duplicates']}, "
            f"quarantined {counts['quarantined']}{f' ({reasons})' if reasons else ''}"
        )
        lines += [
            f"              quarantined {row['image'] or row['trimap']}: {row['reason']}"
            for row in outcome["quarantined"][:5]
        ]
        splits = ", ".join(f"{name} {count} (+{new} inflow)" for name, (count, new) in outcome["splits"].items())
        lines.append(f"  data        {splits}")
    if "challenger" in outcome:
        metric = outcome["metric"]
        for label, model in (("champion", outcome["champion"]), ("challenger", outcome["challenger"])):
            if model is None:
                lines.append(f"  {label:<11} none in {PROD}")
                continue
            name = f"{model['version']} " if "version" in model else ""
            lines.append(
                f"  {label:<11} {name}model {model['model_sha256'][:12]}  "
                f"{metric} {float(lookup(model['metrics'], metric)):.4f}"
            )
    lines.append(f"  decision    {outcome['verdict']}")
    if drift:
        lines += [
            "  drift (served traffic against the training split)",
            *(f"    {line}" for line in drift.splitlines()),
        ]
    return "\n".join(lines)


def drift_report(source: str) -> str:
    try:
        return report(source)
    except (DriftError, OSError) as exc:
        return f"no drift report: {exc}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drift", metavar="URL_OR_FILE", help="a serving model's Prometheus /metrics")
    arguments = parser.parse_args()
    LOG_DIR.mkdir(exist_ok=True)
    log = LOG_DIR / f"retrain-{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}.log"
    try:
        outcome = retrain(log)
    except RetrainFailed as exc:
        sys.exit(f"error: {exc}")
    print(summary(outcome, drift_report(arguments.drift) if arguments.drift else None))
    print(f"(the steps' output: {log})")


if __name__ == "__main__":
    main()

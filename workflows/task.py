"""What one Argo task runs inside the project image, at the image's own commit.

`python -m workflows.task stage NAME [--upstream JSON] [--retrain]`
  1. check the image holds the requested revision (the image is built at that commit);
  2. point DVC at the S3 remote from environment variables (credentials come from a Secret);
  3. write the upstream tasks' dvc.lock entries into the local dvc.lock and pull only the
     outputs this stage depends on;
  4. `dvc repro -s NAME --pull` (restores from the run-cache when it can; `--force` to retrain);
  5. push its outputs and run-cache, and emit its own dvc.lock entry as an output parameter.
`python -m workflows.task merge JSON` writes every entry into one dvc.lock, deterministically.

Parallel pods never share a dvc.lock: each edits its own clone's, and only entries travel.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from mlcore.ops.remote import write_remote

LOCK = Path("dvc.lock")


def outputs_dir() -> Path:
    """Where output parameters are written: /tmp/outputs in a pod (the manifest reads it there)."""
    return Path(os.environ.get("MLCORE_OUTPUTS_DIR", "/tmp/outputs"))


def _dvc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], check=True)


def check_revision(revision: str) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    wanted = subprocess.run(["git", "rev-parse", f"{revision}^{{commit}}"], capture_output=True, text=True)
    if wanted.returncode != 0 or wanted.stdout.strip() != head:
        sys.exit(f"error: this image holds commit {head}, not revision {revision!r}; build the image at that revision")


def configure_remote() -> None:
    """The remote from MLCORE_S3_* variables; keys stay in AWS_* variables, never in a file."""
    bucket, prefix = os.environ["MLCORE_S3_BUCKET"], os.environ.get("MLCORE_S3_PREFIX", "dvcstore")
    write_remote(f"s3://{bucket}/{prefix}", os.environ.get("MLCORE_S3_ENDPOINT") or None)


def read_lock() -> dict:
    return yaml.safe_load(LOCK.read_text()) if LOCK.exists() else {}


def write_entries(entries: dict[str, dict]) -> None:
    """Update or append stage entries the way DVC does, and dump with DVC's own YAML writer."""
    from dvc.utils.serialize import dump_yaml

    data = read_lock() or {"schema": "2.0"}
    stages = data.setdefault("stages", {})
    for name, entry in entries.items():
        stages[name] = entry
    dump_yaml(LOCK, data)


def run_stage(name: str, upstream: dict[str, dict], retrain: bool) -> None:
    configure_remote()
    write_entries(upstream)
    from dvc.repo import Repo

    with Repo(".") as repo:
        own_deps = {dep.def_path for s in repo.index.stages if s.addressing == name for dep in s.deps}
    upstream_outputs = [out["path"] for entry in upstream.values() for out in entry.get("outs", [])]
    targets = [path for path in upstream_outputs if path in own_deps]
    if targets:
        _dvc("pull", *targets)
    _dvc("repro", "--single-item", "--pull", *(["--force"] if retrain else []), name)
    _dvc("push", "--run-cache", name)
    entry = {name: read_lock()["stages"][name]}
    outputs_dir().mkdir(parents=True, exist_ok=True)
    # DVC's own key order (cmd, deps, params, outs), so the merged lock is byte-identical to dvc repro's
    (outputs_dir() / "lock-entry.json").write_text(json.dumps(entry))


def parse_entries(text: str) -> dict[str, dict]:
    """Lock entries as tasks emit them: one compact JSON object per line."""
    entries: dict[str, dict] = {}
    for line in text.splitlines():
        if line.strip():
            entries.update(json.loads(line))
    return entries


def merge(entries: dict[str, dict]) -> None:
    from mlcore.ops.dvc_state import stage_graph

    order = [node.name for node in stage_graph() if node.name in entries]
    write_entries({name: entries[name] for name in order})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    stage = commands.add_parser("stage")
    stage.add_argument("name")
    stage.add_argument("--revision", default="HEAD")
    stage.add_argument("--upstream", default="", help="upstream tasks' lock entries, one JSON per line")
    stage.add_argument("--retrain", default="false", choices=["true", "false"])
    merged = commands.add_parser("merge")
    merged.add_argument("--revision", default="HEAD")
    merged.add_argument("entries", help="every task's lock entry, one JSON per line")
    arguments = parser.parse_args()
    check_revision(arguments.revision)
    if arguments.command == "stage":
        run_stage(arguments.name, parse_entries(arguments.upstream), arguments.retrain == "true")
    else:
        merge(parse_entries(arguments.entries))


if __name__ == "__main__":
    main()

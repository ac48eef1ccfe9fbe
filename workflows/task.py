"""What one Argo task runs inside the project image, at the image's own commit.

Every command first makes its workspace: a clone of the image's repository (/opt/mlcore) in
$MLCORE_WORKSPACE (an emptyDir; the image's root filesystem is read-only), checks that the image holds
the requested revision, and, with `--checkout TAG --git-remote URL` (the reproduce workflow), fetches the
tag and checks it out after checking that its code is the image's (only dvc.lock and the provenance
record may differ, as for a tag that the pipeline's publish task made).

`python -m workflows.task stage NAME [--retrain true] [--publish KEY ...] [--work-prefix P] [--pins JSON]`
  0. with --pins (a retrain), write them into pins.yaml: the inflow and champion stages take what they pin;
  1. point DVC at the S3 remote from environment variables (credentials come from a Secret);
  2. write the upstream tasks' dvc.lock entries (input artifacts) into the local dvc.lock and pull
     only the outputs this stage depends on;
  3. `dvc repro -s NAME --pull` (restores from the run-cache when it can; `--force` to retrain);
  4. push its outputs and run-cache, and emit its own dvc.lock entry, the metrics named by
     --publish and copies of its metrics and plot files, for Argo to show.
`python -m workflows.task publish` merges every entry into one dvc.lock, deterministically,
  writes the provenance record and, with --git-push, commits both (and the pins) and tags the model; with
  --promote true it also assigns prod, only if the release record says the model may replace the one in prod.
`python -m workflows.task snapshot --min-new-samples N --git-remote URL` decides a retrain's pins (the inflow
  listing, the model in prod from the registry's tags) and whether enough new samples arrived to run.
`python -m workflows.task verify` compares every output with the checked-out dvc.lock and fails on the
  first divergence (the reproduce workflow).
`python -m workflows.task check-serving --url URL --commit C` waits until the deployed model reports C.

Entries arrive as files, one dvc.lock entry (JSON) per upstream stage in $MLCORE_INPUTS_DIR/entries/.
Parallel pods never share a dvc.lock: each edits its own clone's, and only entries travel.
With --work-prefix (the reproduce workflow) outputs go to that prefix of the bucket, not the production
one; pinned inputs are still read from the production prefix.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import requests
from pydantic import ValidationError

from mlcore.commands import CommandFailed, dvc, git, run
from mlcore.lockfile import LOCK_PATH, Output, lock_outputs, lock_stages
from mlcore.metrics import lookup
from mlcore.ops.dvc_state import stage_graph
from mlcore.ops.registry import PROD, next_version, prod_version
from mlcore.ops.remote import PRODUCTION_REMOTE, write_remote
from mlcore.ops.replay import compare, first_divergence, print_table
from mlcore.ops.run_record import RECORD_FILES
from mlcore.ops.snapshot import latest_pins, next_pins
from mlcore.params import load_params
from mlcore.pins import Pins, load_pins, write_pins
from mlcore.stages.paths import BEST_PATH, MODEL_PATH, PROVENANCE_PATH, RELEASE_DIR
from mlcore.storage.s3 import S3Prefix
from workflows.serving import storage_prefix


def outputs_dir() -> Path:
    """Where output parameters and artifacts are written: /tmp/outputs in a pod (the manifest reads it there)."""
    return Path(os.environ.get("MLCORE_OUTPUTS_DIR", "/tmp/outputs"))


def inputs_dir() -> Path:
    """Where Argo places input artifacts: /tmp/inputs in a pod (workflows/pipeline.py INPUTS)."""
    return Path(os.environ.get("MLCORE_INPUTS_DIR", "/tmp/inputs"))


def read_entries() -> dict[str, dict]:
    """The upstream lock entries, one JSON file per stage."""
    entries: dict[str, dict] = {}
    for path in sorted((inputs_dir() / "entries").glob("*.json")):
        entries.update(json.loads(path.read_text()))
    return entries


def emit(relative: str, text: str) -> None:
    path = outputs_dir() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def emit_report(path: str) -> None:
    """A copy of a metrics or plot file, uploaded by Argo as an unarchived artifact the UI can show."""
    target = outputs_dir() / "reports" / path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)


def _dvc(*args: str) -> None:
    """dvc with its output in the pod's log as it comes."""
    dvc(*args, capture=False)


def make_workspace() -> None:
    """Work in a clone of the image's repository when MLCORE_WORKSPACE is set (in a pod: the root
    filesystem is read-only); the clone has the same commit, so the same code runs."""
    workspace = os.environ.get("MLCORE_WORKSPACE")
    if not workspace:
        return
    Path(os.environ.get("HOME", workspace)).mkdir(parents=True, exist_ok=True)  # an emptyDir starts empty
    if not Path(workspace, ".git").exists():
        git("clone", "--quiet", "--no-hardlinks", os.getcwd(), workspace)
    os.chdir(workspace)


def check_revision(revision: str) -> None:
    head = git("rev-parse", "HEAD")
    try:
        wanted = git("rev-parse", f"{revision}^{{commit}}")
    except CommandFailed:
        wanted = None
    if wanted != head:
        sys.exit(f"error: this image holds commit {head}, not revision {revision!r}; build the image at that revision")


def checkout_tag(tag: str, remote: str) -> None:
    """Fetch `tag` from `remote` and check it out, refusing a tag whose code is not the image's."""
    if not remote:
        sys.exit(f"error: --git-remote is empty; the tag {tag!r} is fetched from the repository that holds it")
    _git_authenticated(remote, "fetch", "--quiet", "--no-tags", remote, f"refs/tags/{tag}:refs/tags/{tag}")
    changed = set(git("diff", "--name-only", "HEAD", f"refs/tags/{tag}").split())
    if changed - set(RECORD_FILES):
        code = ", ".join(sorted(changed - set(RECORD_FILES)))
        sys.exit(
            f"error: tag {tag!r} changes code of the image's commit ({code}); "
            "submit it with the image built at the tag's own commit"
        )
    git("checkout", "--quiet", f"refs/tags/{tag}")


def configure_remote(work_prefix: str = "") -> None:
    """The remote from MLCORE_S3_* variables; keys stay in AWS_* variables, never in a file. With a work
    prefix, outputs go there and the production prefix stays readable as remote `production`."""
    location = S3Prefix.from_environment()
    if work_prefix:
        write_remote(location.url, location.endpoint, name=PRODUCTION_REMOTE, default=False)
    write_remote(f"s3://{location.bucket}/{work_prefix or location.prefix}", location.endpoint)


def local_entries() -> dict[str, dict]:
    return lock_stages(LOCK_PATH.read_text()) if LOCK_PATH.exists() else {}


def write_entries(entries: dict[str, dict]) -> None:
    """Update or append stage entries the way DVC does, and dump with DVC's own YAML writer."""
    from dvc.utils.serialize import dump_yaml

    dump_yaml(LOCK_PATH, {"schema": "2.0", "stages": local_entries() | entries})


def publish_metrics(files: list[str], keys: list[str]) -> None:
    documents = [json.loads(Path(path).read_text()) for path in files]
    for key in keys:
        found = [lookup(doc, key) for doc in documents if _has(doc, key)]
        if not found:
            sys.exit(f"error: metric {key!r} (params.yaml cluster.published_metrics) is in none of {', '.join(files)}")
        emit(f"metrics/{key}", json.dumps(found[0]))


def _has(document: dict, key: str) -> bool:
    try:
        lookup(document, key)
    except KeyError:
        return False
    return True


def needed_data(deps: set[str], outputs: list[str]) -> set[str]:
    """What to pull: an upstream output that is a dependency or lies inside one (rung1 depends on the folder
    tuning/rung0), or the dependency itself when it lies inside an upstream output (data/prepared/manifest.json)."""
    inside = {out for out in outputs for dep in deps if out == dep or out.startswith(f"{dep}/")}
    return inside | {dep for dep in deps for out in outputs if dep.startswith(f"{out}/")}


def run_stage(name: str, upstream: dict[str, dict], retrain: bool, publish: list[str], work_prefix: str) -> None:
    configure_remote(work_prefix)
    write_entries(upstream)
    from dvc.repo import Repo

    with Repo(".") as repo:
        own_deps = {dep.def_path for s in repo.index.stages if s.addressing == name for dep in s.deps}
    upstream_outputs = [out["path"] for entry in upstream.values() for out in entry.get("outs", [])]
    targets = sorted(needed_data(own_deps, upstream_outputs))
    if targets:
        _dvc("pull", *targets)
    if work_prefix and not retrain:  # a replay restores its pinned inputs from production, as the tag locks them
        _dvc("pull", "--remote", PRODUCTION_REMOTE, name)
    _dvc("repro", "--single-item", "--pull", *(["--force"] if retrain else []), name)
    _dvc("push", "--run-cache", name)
    # DVC's own key order (cmd, deps, params, outs), so the merged lock is byte-identical to dvc repro's
    emit("lock-entry.json", json.dumps({name: local_entries()[name]}))
    node = next(node for node in stage_graph() if node.name == name)
    publish_metrics(list(node.metrics), publish)
    for path in node.reports:
        emit_report(path)


def merge(entries: dict[str, dict]) -> None:
    order = [node.name for node in stage_graph() if node.name in entries]
    write_entries({name: entries[name] for name in order})


def _git_authenticated(remote: str, *args: str) -> None:
    """git against `remote` with the token from MLCORE_GIT_TOKEN (Secret mlcore-git), handed to git by a
    credential helper that reads the variable: the token is never on a command line or in a file, and it is
    offered to that https URL alone (scoped helper), never over plain http or to another host."""
    config = ["-c", "credential.helper="]
    if remote.startswith("https://") and os.environ.get("MLCORE_GIT_TOKEN"):
        helper = '!f() { echo username=x-access-token; echo "password=${MLCORE_GIT_TOKEN}"; }; f'
        config += ["-c", f"credential.{remote}.helper={helper}"]
    run("git", *config, *args, capture=False)  # the command line names the variable, never the token


def upload(files: dict[str, Path], url: str) -> None:
    """Copy files to s3://bucket/prefix/<name> as plain objects (what KServe's storage initializer reads)."""
    location = S3Prefix.parse(url, os.environ.get("MLCORE_S3_ENDPOINT") or None, "serving location")
    client = location.client()
    for name, path in sorted(files.items()):
        client.upload_file(str(path), location.bucket, location.key(name))


def output_md5(entries: dict[str, dict], path: Path) -> str | None:
    """The md5 that the lock entries record for the output at `path`; None when no stage makes it."""
    return next((o["md5"] for e in entries.values() for o in e.get("outs", []) if o["path"] == str(path)), None)


def publish_release(entries: dict[str, dict], model_name: str) -> str:
    """The release folder (and the provenance record) at its content-addressed serving location, or ''
    when the pipeline has no release output."""
    release_md5 = output_md5(entries, RELEASE_DIR)
    if release_md5 is None:
        return ""
    _dvc("pull", str(RELEASE_DIR))
    files = {p.relative_to(RELEASE_DIR).as_posix(): p for p in RELEASE_DIR.rglob("*") if p.is_file()}
    files = {name: path for name, path in files.items() if not name.endswith(".gitignore")}
    url = storage_prefix(os.environ["MLCORE_S3_BUCKET"], model_name, release_md5)
    upload({**files, "provenance.json": PROVENANCE_PATH}, url)
    return url


def publish(
    entries: dict[str, dict],
    push: bool,
    remote: str,
    branch: str,
    release: str,
    model_name: str,
    promote: bool = False,
    deploy: bool = False,
) -> None:
    if release and not push:
        sys.exit(f"error: release {release!r} needs git-push true (the tag must reach the repository)")
    configure_remote()
    merge(entries)
    _dvc("pull", str(BEST_PATH))  # the provenance record names the selected configuration
    run(sys.executable, "-m", "mlcore.stages", "provenance", capture=False)
    emit("model-md5", output_md5(entries, MODEL_PATH))
    emit("commit", git("rev-parse", "HEAD"))
    emit("storage-uri", publish_release(entries, model_name))
    for path in (str(LOCK_PATH), str(PROVENANCE_PATH)):
        emit_report(path)
    if push and not remote:
        sys.exit("error: git-push is true but git-remote is empty; pass the repository's https URL")
    if push and release:
        fetch_registry(remote)
    promoted = not promote or _may_replace_prod()
    emit("deploy", "true" if deploy and promoted else "false")
    if not push:
        return
    git("checkout", "-q", "-B", branch)
    git("add", *RECORD_FILES)
    identity = ["-c", "user.name=mlcore workflow", "-c", "user.email=mlcore-workflow@users.noreply.local"]
    git(*identity, "commit", "-q", "-m", f"dvc.lock, pins and provenance from workflow branch {branch}")
    refspecs = [f"{branch}:refs/heads/{branch}"]
    if release and promoted:
        env = {
            "GIT_COMMITTER_NAME": "mlcore workflow",
            "GIT_AUTHOR_NAME": "mlcore workflow",
            "GIT_COMMITTER_EMAIL": "mlcore-workflow@users.noreply.local",
            "GIT_AUTHOR_EMAIL": "mlcore-workflow@users.noreply.local",
        }
        stage = ["--stage", PROD] if promote else []
        run(sys.executable, "-m", "mlcore.ops.release", release, *stage, capture=False, env=env)
        refspecs.append(f"refs/tags/model@{release}")
        refspecs += [f"refs/tags/{tag}" for tag in git("tag", "--points-at", "HEAD", "model#*").split()]
    _git_authenticated(remote, "push", "--atomic", remote, *refspecs)
    print(f"pushed {', '.join(refspecs)} to {remote}")


def _may_replace_prod() -> bool:
    """The release record's decision (the compare stage), if the model it was compared with is still in prod: a
    rollback or another promotion since the snapshot voids the comparison."""

    record = json.loads((RELEASE_DIR / "release.json").read_text())
    compared, now = load_pins().champion.version, prod_version()
    if compared != now:
        print(f"not promoted: it was compared with {compared or 'no model'} in prod, and prod is now {now or 'empty'}")
        return False
    print(f"{'promote' if record['promote'] else 'not promoted'}: {record['decision']}")
    return record["promote"]


def use_pins(text: str) -> None:
    """A retrain's pins (JSON, from its snapshot task) into pins.yaml, validated."""

    try:
        write_pins(Pins.model_validate_json(text))
    except ValidationError as exc:
        sys.exit(f"error: --pins is not valid pins ({exc.error_count()} problem(s)): {exc}")


def snapshot(remote: str) -> None:
    """Pins for a retrain and whether to run it: the inflow since the last snapshot any run recorded (branches
    mlcore/runs/* and model tags of the repository), the model in prod from the registry's tags."""

    fetch_registry(remote, "+refs/heads/mlcore/runs/*:refs/remotes/runs/*")
    refs = git("for-each-ref", "--format=%(refname)", "refs/remotes/runs", "refs/tags").split()
    inflow = load_params().inflow
    planned = next_pins(inflow, latest_pins(["HEAD", *refs]))
    print(planned.describe(inflow))
    proceed = planned.worth_a_run(inflow)
    if proceed:
        planned.pin_listing()
    emit("pins", planned.pins.model_dump_json())
    emit("proceed", "true" if proceed else "false")
    emit("version", next_version())


def fetch_registry(remote: str, *refspecs: str) -> None:
    """The repository's model tags (GTO's registry) as they are now, replacing the image's own stale ones: GTO
    numbers a new assignment after the highest tag it sees."""
    _git_authenticated(
        remote, "fetch", "--quiet", "--prune", "--no-tags", remote, "+refs/tags/model*:refs/tags/model*", *refspecs
    )


def verify(entries: dict[str, dict], revision: str) -> None:
    got = [Output(stage, out["path"], out["md5"]) for stage, entry in entries.items() for out in entry.get("outs", [])]
    rows = compare(lock_outputs(LOCK_PATH), got)  # the workspace is at the revision (or tag): its committed dvc.lock
    print_table(rows)
    if message := first_divergence(rows):
        sys.exit(message)
    print(f"all {len(rows)} outputs of {revision} reproduced byte for byte")


def check_serving(url: str, commit: str, timeout_s: float, interval_s: float = 5.0) -> None:
    """Wait until the deployed server's V2 metadata names the released commit: KServe's status alone can still
    describe the previous model right after an update, and a rollout answers from old pods for a while."""

    deadline, answer = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            metadata = requests.get(url, timeout=5).json()
            served = (metadata.get("versions"), metadata.get("parameters", {}).get("git_commit"))
            answer = f"version {served[0]}, commit {served[1]}"
            if served == ([commit], commit):
                print(f"{url} serves the model of commit {commit}")
                return
        except (requests.RequestException, ValueError) as exc:
            answer = f"{type(exc).__name__}: {exc}"
        time.sleep(interval_s)
    sys.exit(f"error: after {timeout_s:.0f} s {url} still answers {answer}, not the model of commit {commit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    stage = commands.add_parser("stage")
    stage.add_argument("name")
    stage.add_argument("--retrain", default="false", choices=["true", "false"])
    stage.add_argument("--publish", action="append", default=[], help="metric key to emit, e.g. calibrated.mean_iou")
    stage.add_argument("--work-prefix", default="", help="push outputs under this prefix of the bucket (replays)")
    stage.add_argument("--pins", default="", help="pins.yaml as JSON (a retrain's snapshot); empty: as committed")
    published = commands.add_parser("publish")
    published.add_argument("--git-push", default="false", choices=["true", "false"])
    published.add_argument("--git-remote", default="")
    published.add_argument("--branch", default="mlcore/runs/manual")
    published.add_argument("--release", default="", help="tag the model as model@RELEASE (needs --git-push true)")
    published.add_argument("--model-name", default="pet-segmenter", help="params.yaml release.model_name")
    published.add_argument("--pins", default="", help="pins.yaml as JSON (a retrain's snapshot); empty: as committed")
    published.add_argument(
        "--promote",
        default="false",
        choices=["true", "false"],
        help="with --release: assign prod too, if the model may replace the one in prod",
    )
    published.add_argument(
        "--deploy",
        default="false",
        choices=["true", "false"],
        help="emit deploy=true (the deploy task runs) unless --promote refused the model",
    )
    snapshotted = commands.add_parser("snapshot")
    snapshotted.add_argument("--git-remote", required=True, help="the repository holding the registry's tags")
    verified = commands.add_parser("verify")
    serving = commands.add_parser("check-serving")
    serving.add_argument("--url", required=True, help="the model's V2 metadata URL")
    serving.add_argument("--commit", required=True, help="the commit the released model must report")
    serving.add_argument("--timeout", type=float, default=900, help="seconds to wait for it")
    for command in (stage, published, verified, serving, snapshotted):
        command.add_argument("--revision", default="HEAD", help="the commit the image was built at")
    for command in (stage, verified):
        command.add_argument("--checkout", default="", help="work at this tag, fetched from --git-remote")
        command.add_argument("--git-remote", default="")
    arguments = parser.parse_args()
    make_workspace()
    check_revision(arguments.revision)
    if getattr(arguments, "checkout", ""):
        checkout_tag(arguments.checkout, arguments.git_remote)
    if getattr(arguments, "pins", ""):
        use_pins(arguments.pins)
    if arguments.command == "stage":
        run_stage(arguments.name, read_entries(), arguments.retrain == "true", arguments.publish, arguments.work_prefix)
    elif arguments.command == "check-serving":
        check_serving(arguments.url, arguments.commit, arguments.timeout)
    elif arguments.command == "publish":
        flags = {"promote": arguments.promote == "true", "deploy": arguments.deploy == "true"}
        publish(
            read_entries(),
            arguments.git_push == "true",
            arguments.git_remote,
            arguments.branch,
            arguments.release,
            arguments.model_name,
            **flags,
        )
    elif arguments.command == "snapshot":
        snapshot(arguments.git_remote)
    else:
        verify(read_entries(), arguments.checkout or arguments.revision)


if __name__ == "__main__":
    main()

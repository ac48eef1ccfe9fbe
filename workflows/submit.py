"""Submit a run of a WorkflowTemplate for one git revision: `make submit REF=model@v1.0.0`.

`python -m workflows.submit REF [--reproduce [--any-hardware]] [--retrain] [-p NAME=VALUE ...] [--image-digest D]`

The revision is resolved to its commit here, so the Workflow is labelled with the exact commit (and the
tag, when REF is one) and runs the image built at that commit (`make image`, pushed as
<params.yaml cluster.image_repository>:<commit>), named by digest: a tag can be moved, a digest cannot
(`skopeo` or `crane` resolves it; or pass --image-digest sha256:...). The repository itself is fixed in the
templates: a Workflow can choose only which build of this project's image runs with the Secrets.
To replay a tag, the image is the one of the commit whose
code the tag holds: a tag made by the pipeline's publish task is a commit on top of the run's commit that
changes only dvc.lock and the provenance record, and no image was built for it.
It goes through the `argo` CLI when it is on PATH (your kubeconfig), else through the Argo Server API with
Hera's WorkflowsService (ARGO_SERVER, ARGO_TOKEN; the token is sent as a Bearer header and never printed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from hera.workflows import Workflow, WorkflowsService
from hera.workflows.models import WorkflowCreateRequest, WorkflowTemplateRef

from mlcore.commands import CommandFailed, git, git_show
from mlcore.hardware import NFD_LABELS, node_labels
from mlcore.ops.run_record import RECORD_FILES
from mlcore.params import Params
from mlcore.stages.paths import PROVENANCE_PATH
from workflows.names import NAMESPACE, PIPELINE, REPRODUCE

LABEL_PREFIX = "mlcore.dev"


class SubmitError(RuntimeError):
    """The revision cannot be submitted; the message says why and what to do."""


def _git(*args: str) -> str:
    try:
        return git(*args)
    except CommandFailed as exc:
        raise SubmitError(f"git {' '.join(args)}: {exc.stderr.strip()}") from None


def resolve(ref: str) -> tuple[str, str | None]:
    """(commit, tag or None) of a commit, branch or tag."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    tags = _git("tag", "--list", ref)
    return commit, ref if tags else None


def provenance(commit: str) -> dict:
    """The provenance record committed at `commit` ({} when it has none)."""
    shown = git_show(commit, PROVENANCE_PATH)
    return json.loads(shown) if shown is not None else {}


def code_commit(commit: str) -> str:
    """The commit whose image runs `commit`: the run's commit named in its provenance record when `commit`
    changes nothing else on top of it, else `commit` itself."""
    source = provenance(commit).get("source", {}).get("commit", "")
    if not source or source == commit:
        return commit
    try:
        changed = set(git("diff", "--name-only", source, commit).split())
    except CommandFailed:  # the run's commit is not in this clone
        return commit
    return source if changed <= set(RECORD_FILES) else commit


def hardware_parameters(commit: str, anywhere: bool) -> dict[str, str]:
    """Pin the replay's pods to nodes of the tag's CPU micro-architecture, or let them run anywhere."""

    hardware = provenance(commit).get("environment", {}).get("hardware")  # mlcore.hardware.describe()
    if hardware is None and not anywhere:
        raise SubmitError(
            f"{commit[:12]}'s provenance records no hardware class to pin the replay to; "
            "submit with ANY_HARDWARE=1 (--any-hardware) to run it on any node"
        )
    labels = node_labels(hardware) if hardware else dict.fromkeys(NFD_LABELS, "unrecorded")
    return {**{f"cpu-{k}": v for k, v in labels.items()}, "run-anywhere-os": "linux" if anywhere else "none"}


def image_repository(commit: str) -> str:
    """params.yaml cluster.image_repository at `commit`: the templates run images from there only."""

    params = Params.model_validate(yaml.safe_load(_git("show", f"{commit}:params.yaml")))
    return params.cluster.image_repository


def image_digest(image: str) -> str:
    """The digest of `image` (repo:tag), resolved with skopeo or crane from the registry: a tag can be moved."""
    for command in (["skopeo", "inspect", "--format", "{{.Digest}}", f"docker://{image}"], ["crane", "digest", image]):
        if shutil.which(command[0]):
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise SubmitError(f"{command[0]} cannot resolve {image}: {result.stderr.strip()}; push the image first")
            return result.stdout.strip()
    raise SubmitError(f"cannot pin {image} by digest: install skopeo or crane, or pass --image-digest sha256:...")


def label_value(text: str) -> str:
    """A Kubernetes label value (63 chars of [A-Za-z0-9._-], alphanumeric at both ends): model@v1.0 -> model-v1.0."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("-._")


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    """NAME=VALUE pairs of workflow parameters, e.g. s3-endpoint=http://mlcore-s3.mlcore.svc:8333."""
    parsed = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise SubmitError(f"parameter {pair!r}: expected NAME=VALUE, e.g. s3-bucket=mlcore")
        parsed[name] = value
    return parsed


def build_workflow(
    ref: str, commit: str, tag: str | None, digest: str, reproduce: bool, retrain: bool, extra: dict[str, str]
) -> Workflow:
    """`commit` is the commit the image was built at; the Workflow runs exactly that (never a movable name)."""
    template = REPRODUCE if reproduce else PIPELINE
    arguments = {"revision": commit, "image-digest": digest}
    if reproduce:
        if not tag:
            raise SubmitError(f"{ref} is not a tag: reproduce replays a released model, e.g. REF=model@v1.0.0")
        arguments["tag"] = tag
    else:
        arguments["retrain"] = str(retrain).lower()
    arguments.update(extra)
    labels = {f"{LABEL_PREFIX}/commit": commit, f"{LABEL_PREFIX}/template": template}
    if tag:
        labels[f"{LABEL_PREFIX}/tag"] = label_value(tag)
    return Workflow(
        generate_name=f"{template}-",
        labels=labels,
        annotations={f"{LABEL_PREFIX}/revision": ref},  # the exact ref, which a label value cannot hold
        workflow_template_ref=WorkflowTemplateRef(name=template),
        arguments=arguments,
    )


def submit_with_cli(workflow: Workflow, namespace: str) -> str:
    with tempfile.TemporaryDirectory() as directory:
        manifest = Path(directory) / "workflow.yaml"
        manifest.write_text(workflow.to_yaml())
        result = subprocess.run(
            ["argo", "submit", "-n", namespace, "-o", "name", str(manifest)], capture_output=True, text=True
        )
    if result.returncode != 0:
        raise SubmitError(f"argo submit failed: {result.stderr.strip()}")
    return result.stdout.strip()


def submit_with_api(workflow: Workflow, namespace: str) -> str:
    host, token = os.environ.get("ARGO_SERVER"), os.environ.get("ARGO_TOKEN")
    if not host:
        raise SubmitError("no `argo` CLI on PATH and ARGO_SERVER is unset: install the CLI or set ARGO_SERVER")
    if not host.startswith(("http://", "https://")):
        host = f"https://{host}"
    service = WorkflowsService(
        host=host, token=token, namespace=namespace, verify_ssl=os.environ.get("ARGO_INSECURE_SKIP_VERIFY") != "true"
    )
    try:
        created = service.create_workflow(WorkflowCreateRequest(workflow=workflow.build()), namespace=namespace)
    except Exception as exc:  # Hera raises one exception class per HTTP status; all mean "not submitted"
        raise SubmitError(f"Argo Server {host} refused the workflow: {type(exc).__name__}: {exc}") from None
    return created.metadata.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref", help="git tag, branch or commit, e.g. model@v1.0.0 or HEAD")
    parser.add_argument("--reproduce", action="store_true", help=f"run {REPRODUCE}: retrain a tag and verify it")
    parser.add_argument("--retrain", action="store_true", help="recompute every stage instead of restoring")
    parser.add_argument(
        "--any-hardware",
        action="store_true",
        help="with --reproduce: any node, not only the tag's hardware class (bits may then differ)",
    )
    parser.add_argument(
        "--image-digest",
        help="digest of the image built at REF's code (default: that of <cluster.image_repository>:<commit>)",
    )
    parser.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another workflow parameter, e.g. s3-endpoint=http://mlcore-s3.mlcore.svc:8333",
    )
    parser.add_argument("--namespace", default=os.environ.get("ARGO_NAMESPACE", NAMESPACE))
    parser.add_argument("--dry-run", action="store_true", help="print the Workflow instead of submitting it")
    arguments = parser.parse_args()
    try:
        tagged_commit, tag = resolve(arguments.ref)
        commit = code_commit(tagged_commit) if arguments.reproduce else tagged_commit
        extra = parse_parameters(arguments.parameter)
        if arguments.reproduce and tag:
            extra = {**hardware_parameters(tagged_commit, arguments.any_hardware), **extra}
        digest = arguments.image_digest or image_digest(f"{image_repository(commit)}:{commit}")
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise SubmitError(f"image digest {digest!r}: expected sha256: and 64 hex digits")
        workflow = build_workflow(arguments.ref, commit, tag, digest, arguments.reproduce, arguments.retrain, extra)
        if arguments.dry_run:
            print(workflow.to_yaml())
            return
        submit = submit_with_cli if shutil.which("argo") else submit_with_api
        name = submit(workflow, arguments.namespace)
    except SubmitError as exc:
        sys.exit(f"error: {exc}")
    print(
        f"submitted {name} for {arguments.ref} ({commit[:12]}); watch it with `argo watch -n {arguments.namespace} "
        f"{name.removeprefix('workflow.argoproj.io/')}` or in the Argo UI"
    )


if __name__ == "__main__":
    main()

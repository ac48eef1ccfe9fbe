"""Submit a run of a WorkflowTemplate for one git revision: `make submit REF=model@v1.0.0`.

`python -m workflows.submit REF [--reproduce] [--retrain] [-p NAME=VALUE ...] [--image IMAGE] [--dry-run]`

The revision is resolved to its commit here, so the Workflow is labelled with the exact commit (and the
tag, when REF is one) and runs the image built at that commit (`make image`, pushed as
$MLCORE_IMAGE_REPO:<commit>). It goes through the `argo` CLI when it is on PATH (your kubeconfig), else
through the Argo Server API with Hera's WorkflowsService (ARGO_SERVER, ARGO_TOKEN; the token is sent as
a Bearer header and never printed).
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

from hera.workflows import Workflow
from hera.workflows.models import WorkflowTemplateRef

from workflows.pipeline import NAMESPACE, PIPELINE, REPRODUCE

DEFAULT_IMAGE_REPO = "ghcr.io/example/mlcore"
LABEL_PREFIX = "mlcore.dev"


class SubmitError(RuntimeError):
    """The revision cannot be submitted; the message says why and what to do."""


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SubmitError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def resolve(ref: str) -> tuple[str, str | None]:
    """(commit, tag or None) of a commit, branch or tag."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    tags = _git("tag", "--list", ref)
    return commit, ref if tags else None


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
    ref: str, commit: str, tag: str | None, image: str, reproduce: bool, retrain: bool, extra: dict[str, str]
) -> Workflow:
    template = REPRODUCE if reproduce else PIPELINE
    if reproduce and not tag:
        raise SubmitError(f"{ref} is not a tag: reproduce replays a released model, e.g. REF=model@v1.0.0")
    arguments = {"revision": tag or commit, "image": image}
    if not reproduce:
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
        result = subprocess.run(["argo", "submit", "-n", namespace, "-o", "name", str(manifest)],
                                capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        raise SubmitError(f"argo submit failed: {result.stderr.strip()}")
    return result.stdout.strip()


def submit_with_api(workflow: Workflow, namespace: str) -> str:
    from hera.workflows import WorkflowsService
    from hera.workflows.models import WorkflowCreateRequest

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
    parser.add_argument("--image", help="image built at REF (default: $MLCORE_IMAGE_REPO:<commit>)")
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
        commit, tag = resolve(arguments.ref)
        image = arguments.image or f"{os.environ.get('MLCORE_IMAGE_REPO', DEFAULT_IMAGE_REPO)}:{commit}"
        extra = parse_parameters(arguments.parameter)
        workflow = build_workflow(arguments.ref, commit, tag, image, arguments.reproduce, arguments.retrain, extra)
        if arguments.dry_run:
            print(workflow.to_yaml())
            return
        submit = submit_with_cli if shutil.which("argo") else submit_with_api
        name = submit(workflow, arguments.namespace)
    except SubmitError as exc:
        sys.exit(f"error: {exc}")
    print(f"submitted {name} for {arguments.ref} ({commit[:12]}); watch it with `argo watch -n {arguments.namespace} "
          f"{name.removeprefix('workflow.argoproj.io/')}` or in the Argo UI")  # fmt: skip


if __name__ == "__main__":
    main()

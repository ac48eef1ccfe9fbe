"""`make submit`: the request that reaches Argo. No Kubernetes or Argo Server can run here, so both
submission paths are checked against stand-ins for Argo only (said where they are used): a loopback
HTTP server in place of the Argo Server API, an `argo` executable in place of the CLI, and a `skopeo`
executable in place of a registry lookup. The git resolution, Hera serialization and HTTP client are the
real ones."""

from __future__ import annotations

import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from tests.helpers import VENV_BIN, copy_project, git, run

TOKEN = "argo-token-never-printed-0123456789"
DIGEST = "sha256:" + "ab" * 32


def stand_in(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def registry(tmp_path) -> Path:
    """A `skopeo` that answers one digest for any image (stands in for a registry: none is reachable here)."""
    stand_in(tmp_path / "bin", "skopeo", f'echo "$@" >> {tmp_path}/skopeo.argv\necho {DIGEST}')
    return tmp_path / "bin"


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> tuple[Path, str]:
    project = copy_project(tmp_path_factory.mktemp("submit") / "project", skip_outputs=False)
    git(project, "tag", "-a", "model@v1.2.0", "-m", "model v1.2.0")
    return project, git(project, "rev-parse", "HEAD").strip()


class ArgoServerStandIn(BaseHTTPRequestHandler):
    """Stands in for the Argo Server's POST /api/v1/workflows/{namespace} (a mock: no Argo here)."""

    requests: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        created = {**body["workflow"], "metadata": {**body["workflow"]["metadata"], "name": "mlcore-pipeline-x7k2p"}}
        payload = json.dumps(created).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_submit_through_the_argo_server_api_sends_the_labelled_workflow(tagged, registry):
    project, commit = tagged
    server = ThreadingHTTPServer(("127.0.0.1", 0), ArgoServerStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {
            "PATH": f"{registry}:{VENV_BIN}:/usr/bin:/bin",
            "ARGO_SERVER": f"http://127.0.0.1:{server.server_port}",
            "ARGO_TOKEN": TOKEN,
        }
        result = run(project, "python", "-m", "workflows.submit", "model@v1.2.0", "-p", "s3-bucket=pets", env=env)
    finally:
        server.shutdown()
    request = ArgoServerStandIn.requests[-1]
    assert request["path"] == "/api/v1/workflows/mlcore"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    workflow = request["body"]["workflow"]
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "mlcore-pipeline"}
    parameters = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert parameters == {
        "revision": commit,  # the commit, never a tag name the image's repository may lack
        "image-digest": DIGEST,  # of params.yaml cluster.image_repository:<commit>: a tag can be moved
        "retrain": "false",
        "s3-bucket": "pets",
    }
    assert workflow["metadata"]["labels"] == {
        "mlcore.dev/commit": commit,
        "mlcore.dev/template": "mlcore-pipeline",
        "mlcore.dev/tag": "model-v1.2.0",
    }
    assert workflow["metadata"]["annotations"] == {"mlcore.dev/revision": "model@v1.2.0"}
    assert "submitted mlcore-pipeline-x7k2p" in result.stdout
    assert f"docker://ghcr.io/example/mlcore:{commit}" in (registry.parent / "skopeo.argv").read_text()
    assert TOKEN not in result.stdout + result.stderr


def _argo_cli(bin_dir: Path, tmp_path: Path) -> dict:
    # stands in for the argo CLI (a mock: no cluster to submit to)
    stand_in(
        bin_dir,
        "argo",
        f'echo "$@" > {tmp_path}/argv\ncp "$6" {tmp_path}/submitted.yaml\n'
        "echo workflow.argoproj.io/mlcore-reproduce-abcde",
    )
    return {"PATH": f"{bin_dir}:{VENV_BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path))}


def test_submit_prefers_the_argo_cli_and_reproduce_needs_a_tag(tagged, registry, tmp_path):
    project, commit = tagged
    env = _argo_cli(registry, tmp_path)
    result = run(project, "python", "-m", "workflows.submit", "model@v1.2.0", "--reproduce", "--any-hardware", env=env)
    assert (tmp_path / "argv").read_text().split()[:5] == ["submit", "-n", "mlcore", "-o", "name"]
    workflow = yaml.safe_load((tmp_path / "submitted.yaml").read_text())
    assert workflow["spec"]["workflowTemplateRef"]["name"] == "mlcore-reproduce"
    parameters = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert {k: v for k, v in parameters.items() if not k.startswith("cpu-")} == {
        "revision": commit,
        "tag": "model@v1.2.0",
        "image-digest": DIGEST,
        "run-anywhere-os": "linux",  # --any-hardware: the pinning's off switch
    }
    assert "submitted workflow.argoproj.io/mlcore-reproduce-abcde" in result.stdout

    refused = run(project, "python", "-m", "workflows.submit", commit, "--reproduce", env=env, check=False)
    assert refused.returncode != 0 and "is not a tag" in refused.stderr
    unknown = run(project, "python", "-m", "workflows.submit", "model@v9.9.9", env=env, check=False)
    assert unknown.returncode != 0 and "model@v9.9.9" in unknown.stderr


def test_a_tag_the_pipeline_published_replays_with_the_image_of_its_runs_commit(tagged, registry, tmp_path):
    """publish commits dvc.lock and provenance on top of the run's commit C and tags that commit C';
    no image exists for C', so the replay must run C's image, and fails loudly if C' changed code."""
    project, commit = tagged
    workspace = tmp_path / "published"
    git(tmp_path, "clone", "-q", str(project), str(workspace))
    provenance = workspace / "models" / "provenance.json"
    provenance.parent.mkdir(exist_ok=True)
    hardware = {"cpu": {"vendor": "AuthenticAMD", "family": "25", "model_id": "17"}}
    provenance.write_text(json.dumps({"source": {"commit": commit}, "environment": {"hardware": hardware}}))
    git(workspace, "add", "-f", "models/provenance.json")
    git(workspace, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "dvc.lock and provenance")
    git(workspace, "tag", "model@v2.0.0")
    env = _argo_cli(registry, tmp_path)
    run(workspace, "python", "-m", "workflows.submit", "model@v2.0.0", "--reproduce", env=env)
    parameters = {
        p["name"]: p["value"]
        for p in yaml.safe_load((tmp_path / "submitted.yaml").read_text())["spec"]["arguments"]["parameters"]
    }
    assert parameters["revision"] == commit and parameters["tag"] == "model@v2.0.0"
    # pinned to the tag's CPU micro-architecture, by Node Feature Discovery's labels
    assert (parameters["cpu-vendor_id"], parameters["cpu-family"], parameters["cpu-id"]) == ("AMD", "25", "17")
    assert parameters["run-anywhere-os"] == "none"
    assert f"docker://ghcr.io/example/mlcore:{commit}" in (tmp_path / "skopeo.argv").read_text()

    (workspace / "README.md").write_text("changed code\n")
    git(workspace, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "code change")
    git(workspace, "tag", "model@v2.0.1")
    run(workspace, "python", "-m", "workflows.submit", "model@v2.0.1", "--reproduce", env=env)
    parameters = {
        p["name"]: p["value"]
        for p in yaml.safe_load((tmp_path / "submitted.yaml").read_text())["spec"]["arguments"]["parameters"]
    }
    assert parameters["revision"] == git(workspace, "rev-parse", "HEAD").strip()  # its own commit's image


def test_an_image_that_cannot_be_pinned_by_digest_is_refused(tagged, tmp_path):
    project, _ = tagged
    env = _argo_cli(tmp_path / "bin", tmp_path)  # no skopeo, no crane on PATH
    refused = run(project, "python", "-m", "workflows.submit", "HEAD", env=env, check=False)
    assert refused.returncode != 0 and "by digest" in refused.stderr
    pinned = run(project, "python", "-m", "workflows.submit", "HEAD", "--image-digest", DIGEST, env=env)
    assert "submitted" in pinned.stdout

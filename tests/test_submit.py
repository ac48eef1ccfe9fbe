"""`make submit`: the request that reaches Argo. No Kubernetes or Argo Server can run here, so both
submission paths are checked against stand-ins for Argo only (said where they are used): a loopback
HTTP server in place of the Argo Server API, and an `argo` executable in place of the CLI. The git
resolution, Hera serialization and HTTP client are the real ones."""

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


def test_submit_through_the_argo_server_api_sends_the_labelled_workflow(tagged):
    project, commit = tagged
    server = ThreadingHTTPServer(("127.0.0.1", 0), ArgoServerStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "ARGO_SERVER": f"http://127.0.0.1:{server.server_port}",
               "ARGO_TOKEN": TOKEN, "MLCORE_IMAGE_REPO": "registry.example/mlcore"}  # fmt: skip
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
        "revision": "model@v1.2.0",
        "image": f"registry.example/mlcore:{commit}",
        "retrain": "false",
        "s3-bucket": "pets",
    }
    assert workflow["metadata"]["labels"] == {
        "mlcore.dev/commit": commit, "mlcore.dev/template": "mlcore-pipeline", "mlcore.dev/tag": "model-v1.2.0",
    }  # fmt: skip
    assert workflow["metadata"]["annotations"] == {"mlcore.dev/revision": "model@v1.2.0"}
    assert "submitted mlcore-pipeline-x7k2p" in result.stdout
    assert TOKEN not in result.stdout + result.stderr


def test_submit_prefers_the_argo_cli_and_reproduce_needs_a_tag(tagged, tmp_path):
    project, commit = tagged
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_argo = bin_dir / "argo"  # stands in for the argo CLI (a mock: no cluster to submit to)
    fake_argo.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\ncp "$6" {tmp_path}/submitted.yaml\n'
                         'echo workflow.argoproj.io/mlcore-reproduce-abcde\n')  # fmt: skip
    fake_argo.chmod(fake_argo.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bin_dir}:{VENV_BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path))}
    result = run(project, "python", "-m", "workflows.submit", "model@v1.2.0", "--reproduce", env=env)
    assert (tmp_path / "argv").read_text().split()[:5] == ["submit", "-n", "mlcore", "-o", "name"]
    workflow = yaml.safe_load((tmp_path / "submitted.yaml").read_text())
    assert workflow["spec"]["workflowTemplateRef"]["name"] == "mlcore-reproduce"
    assert {p["name"] for p in workflow["spec"]["arguments"]["parameters"]} == {"revision", "image"}
    assert "submitted workflow.argoproj.io/mlcore-reproduce-abcde" in result.stdout

    refused = run(project, "python", "-m", "workflows.submit", commit, "--reproduce", env=env, check=False)
    assert refused.returncode != 0 and "is not a tag" in refused.stderr
    unknown = run(project, "python", "-m", "workflows.submit", "model@v9.9.9", env=env, check=False)
    assert unknown.returncode != 0 and "model@v9.9.9" in unknown.stderr

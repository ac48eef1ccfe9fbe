"""Stands in for KServe (Standard mode) when the deploy task applies an InferenceService: no Kubernetes runs here.

What it does, as KServe's controller and webhook would (tests/argo_pods.py cites the source): copies the objects
under the predictor's STORAGE_URI into a folder mounted read-only at /mnt/models (the storage initializer),
rewrites STORAGE_URI to /mnt/models, and runs the predictor's own container (image, command, args, env with
its secretKeyRefs resolved) as its securityContext says (tests/argo_local.container_run): uid 1000, read-only
root filesystem, its /tmp volume.
Then it probes the container as the kubelet does: the startup probe every periodSeconds, each GET allowed its
timeoutSeconds, until it passes or failureThreshold attempts failed (the kubelet would then kill the
container; here the test fails), then the readiness and liveness probes once each.
The Service (port 80 -> 8080) is stood in for by the host port it returns, which the probes use for the
container port. Not modelled: probes repeating after start-up, rollouts, status conditions, the
ServiceAccount's credentials injection (the folder is filled with the test's keys).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import requests

from tests.argo_local import container_run
from tests.helpers import free_port_block


class KServeStandIn:
    def __init__(self, workdir: Path, s3_client, secrets: dict, images: dict[str, str], engine: str | None = None):
        """`images` maps an image reference (repository@digest) to the local tag of that build."""
        self.workdir, self.s3, self.secrets, self.images = workdir, s3_client, secrets, images
        self.engine = engine or os.environ.get("CONTAINER_ENGINE") or "podman"
        self.port = free_port_block(1)
        self.containers: list[str] = []
        self.services: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def apply(self, service: dict) -> None:
        assert service["kind"] == "InferenceService" and service["apiVersion"] == "serving.kserve.io/v1beta1"
        self.services.append(service)
        (container,) = service["spec"]["predictor"]["containers"]
        env = {
            e["name"]: e["value"] if "value" in e else self._secret(e["valueFrom"]["secretKeyRef"])
            for e in container["env"]
        }
        env = {name: value for name, value in env.items() if value is not None}
        models = self._storage_initializer(env.pop("STORAGE_URI"))
        env["STORAGE_URI"] = "/mnt/models"
        tmp = self.workdir / f"predictor-{len(self.containers)}-tmp"
        tmp.mkdir(parents=True)
        args = [
            str(self.port) if previous == "--port" else arg
            for previous, arg in zip(["", *container["args"][:-1]], container["args"], strict=True)
        ]
        name = f"mlcore-predictor-{os.getpid()}-{len(self.containers)}"
        volumes = {models: "/mnt/models:ro", tmp: "/tmp"}  # KServe mounts the model read-only
        run = container_run(self.engine, name, env, self.workdir / f"{name}.env", volumes)
        subprocess.run(
            [*run, "--detach", self.images[container["image"]], *container["command"], *args],
            check=True,
            capture_output=True,
        )
        self.containers.append(name)
        self._kubelet_probes(container)

    def _kubelet_probes(self, container: dict) -> None:
        """The kubelet probes the pod's IP on the probe's port: here the container shares the host's network,
        so what is checked from the spec is that the probes target the container's port and that the server
        listens on every interface (a server bound to 127.0.0.1 would pass here and fail in a pod)."""
        (port,) = (entry["containerPort"] for entry in container["ports"])
        args = container["args"]
        assert args[args.index("--host") + 1] in ("0.0.0.0", "::"), "the server must listen on the pod's IP"
        kinds = ("startupProbe", "readinessProbe", "livenessProbe")
        assert all(container[kind]["httpGet"]["port"] == port for kind in kinds), "a probe misses the port"
        startup = container["startupProbe"]
        for _ in range(startup["failureThreshold"]):
            if self._probe_passes(startup):
                break
            time.sleep(startup["periodSeconds"])
        else:
            raise AssertionError(f"the predictor's startup probe never passed; the kubelet kills it:\n{self.logs()}")
        for kind in ("readinessProbe", "livenessProbe"):
            assert self._probe_passes(container[kind]), f"the predictor's {kind} failed:\n{self.logs()}"

    def _probe_passes(self, probe: dict) -> bool:
        """An httpGet probe: any status from 200 to 399 within timeoutSeconds."""
        try:
            response = requests.get(f"{self.url}{probe['httpGet']['path']}", timeout=probe["timeoutSeconds"])
        except requests.RequestException:
            return False
        return 200 <= response.status_code < 400

    def _secret(self, ref: dict) -> str | None:
        """As the kubelet: a missing Secret or key fails the pod unless the reference is optional (then the
        variable is left unset)."""
        value = self.secrets.get(ref["name"], {}).get(ref["key"])
        assert value is not None or ref.get("optional"), f"Secret {ref['name']} (key {ref['key']}) is missing"
        return value

    def _storage_initializer(self, uri: str) -> Path:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        target = self.workdir / f"models-{len(self.containers)}"
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
        for item in (item for page in pages for item in page.get("Contents", [])):
            path = target / item["Key"].removeprefix(f"{prefix}/")
            path.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(bucket, item["Key"], str(path))
        assert (target / "release.json").is_file(), f"{uri} holds no release"
        return target

    def logs(self) -> str:
        return "".join(
            subprocess.run([self.engine, "logs", name], capture_output=True, text=True).stdout
            for name in self.containers
        )

    def stop(self) -> None:
        for name in self.containers:
            subprocess.run([self.engine, "rm", "--force", name], capture_output=True)

"""What a real cluster enforces on this project's pods, beyond what the YAML schemas check: Pod Security
`restricted` admission of every pod Argo v4.1.2 and KServe v0.20.0 would create (rendered by
tests/argo_pods.py, checked rule by rule by tests/pod_security.py), and Argo's retry decision for the
failures infrastructure causes versus a stage failing on its own input (tests/argo_local.py models it)."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from mlcore.params import load_params
from tests.argo_local import NodeResult, classify, should_retry
from tests.argo_pods import (
    EXECUTOR_USER,
    KSERVE_DEFAULT_STORAGE_CONTAINER,
    KSERVE_STORAGE_INITIALIZER_USER,
    controller_executor,
    predictor_pod,
    workflow_pods,
)
from tests.helpers import REPO_ROOT
from tests.pod_security import violations
from workflows.pipeline import image, workflow_template
from workflows.serving import FEEDBACK_SECRET, PROBE_TIMEOUT_S, inference_service

CLUSTER_CONF = REPO_ROOT / "cluster-conf"
CONTROLLER_CONFIG = CLUSTER_CONF / "argo-workflows" / "workflow-controller-configmap.yaml"
# The WorkflowTemplates, which hold every template a pod is made of (the CronWorkflow only references one)
MANIFESTS = sorted(p for p in (REPO_ROOT / "argo").glob("*.yaml") if "templates:" in p.read_text())
POD_TEMPLATES = {"pipeline.yaml": "train", "reproduce.yaml": "train", "retrain.yaml": "snapshot"}


def image_user() -> int:
    """The numeric USER of docker/Dockerfile (the kubelet can verify runAsNonRoot only for a number)."""
    match = re.search(r"^USER (\d+)(:\d+)?$", (REPO_ROOT / "docker" / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "docker/Dockerfile must set a numeric USER"
    return int(match.group(1))


def project_image() -> str:
    """The project image as the generated templates name it: params.yaml's repository at the submitted digest."""
    cluster = load_params(REPO_ROOT / "params.yaml").cluster
    return image(workflow_template("any", cluster, []), cluster)


def image_users(executor: dict) -> dict[str, int]:
    return {
        project_image(): image_user(),
        "registry.example/mlcore@sha256:0": image_user(),
        "kserve/storage-initializer:v0.20.0": KSERVE_STORAGE_INITIALIZER_USER,
        **({executor["image"]: EXECUTOR_USER} if executor.get("image", "").endswith("-nonroot") else {}),
    }


def test_the_namespace_enforces_restricted():
    (namespace,) = yaml.safe_load_all((CLUSTER_CONF / "base" / "namespace.yaml").read_text())
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_every_workflow_pod_is_admitted_under_restricted(manifest):
    executor = controller_executor(CONTROLLER_CONFIG)
    pods = workflow_pods(yaml.safe_load(manifest.read_text()), executor)
    assert {POD_TEMPLATES[manifest.name], "artifact-gc"} <= pods.keys()
    found = [v for pod in pods.values() for v in violations(pod, image_users(executor))]
    assert not found, "\n".join(found)


def test_argo_injected_containers_without_the_executor_security_context_are_rejected():
    """Argo's stock ConfigMap sets no executor securityContext: every pod's init and wait containers break
    the restricted profile, whatever the template says (the failure of every pod before this fix)."""
    pods = workflow_pods(yaml.safe_load(MANIFESTS[0].read_text()), {})
    found = violations(pods["train"], image_users({}))
    assert "pod train, initContainer init: privilege escalation: allowPrivilegeEscalation must be false" in found
    assert "pod train, container wait: capabilities: drop must include ALL" in found
    assert not [line for line in found if "container main" in line]


def _service(storage_container: str | None = "mlcore-restricted") -> dict:
    service = inference_service(
        "pet-segmenter",
        "mlcore",
        "registry.example/mlcore@sha256:0",
        "s3://mlcore/serving/pet-segmenter/abc",
        "v1",
        "c0ffee",
        "s3://mlcore/feedback",
        "http://mlcore-s3.mlcore.svc:8333",
    )
    if storage_container is None:
        del service["spec"]["predictor"]["storageContainerName"]
    return service


def _storage_containers() -> dict[str, dict]:
    (ours,) = yaml.safe_load_all((CLUSTER_CONF / "base" / "kserve-storage-container.yaml").read_text())
    return {"default": KSERVE_DEFAULT_STORAGE_CONTAINER, ours["metadata"]["name"]: ours}


def test_the_predictor_pod_with_its_storage_initializer_is_admitted_under_restricted():
    pod = predictor_pod(_service(), _storage_containers())
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["storage-initializer"]
    found = violations(pod, image_users({}))
    assert not found, "\n".join(found)


def test_kserves_default_storage_initializer_is_rejected():
    """Without our ClusterStorageContainer, KServe (installed from kserve.yaml) injects an init container with
    no securityContext, and the predictor's pod is never admitted."""
    found = violations(predictor_pod(_service(None), _storage_containers()), image_users({}))
    rule = "initContainer storage-initializer: capabilities: drop must include ALL"
    assert f"pod pet-segmenter-predictor, {rule}" in found


def test_a_user_given_by_name_cannot_be_verified_by_the_kubelet():
    pod = predictor_pod(_service(), _storage_containers())
    del pod["spec"]["securityContext"]["runAsUser"]
    for container in pod["spec"]["containers"]:
        container["securityContext"].pop("runAsUser")
    found = violations(pod, {})  # the image's USER is a name: nothing numeric to check
    assert any("kubelet: runAsNonRoot needs a numeric uid" in line for line in found)


def _templates(manifest) -> dict[str, dict]:
    return {t["name"]: t for t in yaml.safe_load(manifest.read_text())["spec"]["templates"]}


OOM = classify(137, "oom")
DELETED = classify(137, "delete")
EVICTED = NodeResult("Failed", "137", "The node was low on resource: memory. Threshold quantity: 100Mi")
NODE_SHUTDOWN = NodeResult("Failed", "143", "Pod was terminated in response to imminent node shutdown.")
BAD_INPUT = classify(1, None)
USAGE_ERROR = classify(2, None)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_every_pod_retries_what_infrastructure_did_and_never_its_own_failure(manifest):
    for name, template in _templates(manifest).items():
        if "container" not in template and "resource" not in template:
            continue
        limit = int(template["retryStrategy"]["limit"])
        backoff = template["retryStrategy"].get("backoff", {})
        assert "maxDuration" not in backoff, f"{name}: maxDuration undercuts training"
        for infrastructure in (OOM, DELETED, EVICTED, NODE_SHUTDOWN):
            assert should_retry(template, infrastructure, 1), f"{name} is not retried after {infrastructure}"
            assert not should_retry(template, infrastructure, limit + 1), f"{name} retried past its limit"
        for own_failure in (BAD_INPUT, USAGE_ERROR):
            assert not should_retry(template, own_failure, 1), f"{name} retried its own failure {own_failure}"


def test_argo_classifies_oom_as_failed_and_a_deleted_pod_as_error():
    assert (OOM.status, OOM.exit_code, OOM.message) == ("Failed", "137", "main: OOMKilled (exit code 137)")
    assert (DELETED.status, DELETED.message) == ("Error", "pod deleted")
    assert (BAD_INPUT.status, BAD_INPUT.exit_code, BAD_INPUT.message) == ("Failed", "1", "main: Error (exit code 1)")


def test_an_on_error_policy_would_not_retry_an_oom_killed_training():
    """What the manifests said before: OnError retries only Error nodes, and an OOM-killed main is Failed."""
    train = copy.deepcopy(_templates(MANIFESTS[0])["train"])
    train["retryStrategy"] = {"limit": 3, "retryPolicy": "OnError"}
    assert not should_retry(train, OOM, 1)
    assert should_retry(train, DELETED, 1)


def test_deploy_waits_for_kserves_verdict_under_its_own_account():
    """Without conditions a resource template succeeds as soon as the API server accepts the object, whether
    or not the model ever loads; only this template's pod may touch InferenceServices."""
    templates = _templates(MANIFESTS[0])
    deploy = templates["deploy"]
    assert deploy["resource"]["successCondition"] == (
        "status.modelStatus.transitionStatus == UpToDate,status.modelStatus.states.activeModelState == Loaded"
    )
    assert "BlockedByFailedLoad" in deploy["resource"]["failureCondition"]
    assert deploy["timeout"] and deploy["serviceAccountName"] == "mlcore-deployer"
    assert all("serviceAccountName" not in t for name, t in templates.items() if name != "deploy")
    service = yaml.safe_load(deploy["resource"]["manifest"])
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_the_predictor_has_probes_with_timeouts_and_feedback_only_when_asked():
    """Kubernetes' default probe timeout is 1 s and there is no startup probe unless given: the server's health
    answers in milliseconds (tests/test_serving.py checks it under a large request against PROBE_TIMEOUT_S),
    and the startup probe, not a guessed initial delay, covers loading the model."""
    (container,) = _service()["spec"]["predictor"]["containers"]
    probes = {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert all(
        probe["timeoutSeconds"] == PROBE_TIMEOUT_S and probe["httpGet"]["port"] == 8080 for probe in probes.values()
    )
    assert probes["startupProbe"]["periodSeconds"] * probes["startupProbe"]["failureThreshold"] >= 120
    assert "initialDelaySeconds" not in probes["livenessProbe"]
    off = inference_service("pet-segmenter", "mlcore", "image", "s3://m/s", "v1", "c0ffee", "", "http://s3")
    env = {e["name"]: e for e in off["spec"]["predictor"]["containers"][0]["env"]}
    assert env["MLCORE_FEEDBACK_URL"]["value"] == ""  # feedback off: the server never needs the token
    token = env["MLCORE_FEEDBACK_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": FEEDBACK_SECRET, "key": "token", "optional": True}

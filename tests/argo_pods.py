"""The pods a real cluster would create from this project's manifests, rendered the way their controllers do,
so tests can check them against what the cluster enforces (tests/pod_security.py).

- Argo Workflows v4.1.2 (workflow/controller/workflowpod.go): a container template's pod is the template's
  container as `main` (its command wrapped by the emissary), plus the `init` and `wait` containers, whose
  securityContext, image and resources come from the controller ConfigMap's `executor` section and from
  nowhere else; the pod's securityContext is the template's, else the workflow's. Volumes: `var-run-argo`
  and `tmp-dir-argo` emptyDirs, the workflow's volumes, an `input-artifacts` emptyDir when the template has
  input artifacts, secret volumes for the artifact repository's keys. A resource template's pod is `init`,
  `wait` (when logs are archived) and an executor `main` (`argoexec resource`); these get
  common.MinimalCtrSC() only when the ConfigMap sets no securityContext. Artifact GC pods
  (workflow/controller/artifact_gc.go) get MinimalPodSC()/MinimalCtrSC().
- KServe v0.20.0 (pkg/webhook/admission/pod/storage_initializer_injector.go): the predictor pod is the
  InferenceService's predictor PodSpec plus the `storage-initializer` init container, built from the
  inferenceservice-config defaults and then merged with the selected ClusterStorageContainer's container;
  it has no securityContext of its own. Volume `kserve-provision-location` (emptyDir) at /mnt/models.

What this stand-in does not model: mutating webhooks other than KServe's, LimitRanges, the kubelet's image
pull, volume mounts (Argo's /mainctrfs mirrors and subPath mounts: the executed-DAG test runs the real
commands instead), and Argo's init-less mode (opt-in; it mounts an `image` volume).
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

EXECUTOR_USER = 8737  # the numeric USER of argoexec:<version>-nonroot (the plain image has none: root)
KSERVE_STORAGE_INITIALIZER_USER = 1000  # python/storage-initializer.Dockerfile `USER 1000`
MINIMAL_CONTAINER_CONTEXT = {
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "runAsNonRoot": True,
    "runAsUser": EXECUTOR_USER,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "seccompProfile": {"type": "RuntimeDefault"},
}
MINIMAL_POD_CONTEXT = {"runAsNonRoot": True, "runAsUser": EXECUTOR_USER, "seccompProfile": {"type": "RuntimeDefault"}}


def controller_executor(configmap_path: Path) -> dict:
    """The `executor` section of the workflow-controller ConfigMap that GitOps applies."""
    configmap = yaml.safe_load(configmap_path.read_text())
    return yaml.safe_load(configmap["data"].get("executor", "{}")) or {}


def _executor_container(name: str, executor: dict, resource_template: bool) -> dict:
    container = {"name": name, "image": executor.get("image", "quay.io/argoproj/argoexec:v4.1.2")}
    context = copy.deepcopy(executor.get("securityContext"))
    if context is None and resource_template:
        context = copy.deepcopy(MINIMAL_CONTAINER_CONTEXT)
    if context is not None:
        container["securityContext"] = context
    return container


def _emptydir(name: str) -> dict:
    return {"name": name, "emptyDir": {}}


def workflow_pods(manifest: dict, executor: dict) -> dict[str, dict]:
    """Every pod the Argo controller would create for `manifest` (a Workflow or WorkflowTemplate), by template
    name, plus the artifact GC pod when the workflow asks for artifact GC."""
    spec = manifest["spec"]
    pods = {}
    for template in spec["templates"]:
        if "container" not in template and "resource" not in template:
            continue  # DAG and steps templates run no pod
        volumes = [_emptydir("var-run-argo"), _emptydir("tmp-dir-argo"), *copy.deepcopy(spec.get("volumes", []))]
        volumes.append({"name": "mlcore-s3", "secret": {"secretName": "mlcore-s3"}})  # artifact repository keys
        if "container" in template:
            main = copy.deepcopy(template["container"])
            main["name"] = "main"
            main["command"] = ["/var/run/argo/argoexec", "emissary", "--", *main.get("command", [])]
            containers = [_executor_container("wait", executor, False), main]  # Argo appends wait first
            init = [_executor_container("init", executor, False)]
            if template.get("inputs", {}).get("artifacts"):
                volumes.append(_emptydir("input-artifacts"))
        else:
            main = _executor_container("main", executor, True)
            main["args"] = ["resource", template["resource"]["action"]]
            containers = [_executor_container("wait", executor, True), main]
            init = [_executor_container("init", executor, True)]
        pod_spec = {
            "serviceAccountName": template.get("serviceAccountName", spec.get("serviceAccountName", "default")),
            "initContainers": init,
            "containers": containers,
            "volumes": volumes,
        }
        if context := template.get("securityContext", spec.get("securityContext")):
            pod_spec["securityContext"] = copy.deepcopy(context)
        pods[template["name"]] = {"metadata": {"name": template["name"]}, "spec": pod_spec}
    if "artifactGC" in spec:
        pods["artifact-gc"] = {
            "metadata": {"name": "artifact-gc"},
            "spec": {
                "serviceAccountName": spec["artifactGC"].get("serviceAccountName", "default"),
                "securityContext": dict(MINIMAL_POD_CONTEXT),
                "containers": [
                    {
                        "name": "main",
                        "image": executor.get("image", ""),
                        "args": ["artifact", "delete"],
                        "securityContext": dict(MINIMAL_CONTAINER_CONTEXT),
                    }
                ],
            },
        }
    return pods


def _merge_container(base: dict, patch: dict) -> dict:
    """KServe's utils.MergeContainerWithPatch: a strategic merge of the ClusterStorageContainer's container
    into the default one (maps merge recursively, scalars and lists from the patch win)."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_container(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def predictor_pod(service: dict, storage_containers: dict[str, dict]) -> dict:
    """The predictor pod KServe creates for an InferenceService with a custom container and STORAGE_URI.
    `storage_containers` are the ClusterStorageContainers by name: KServe uses the one the predictor names
    in storageContainerName, else the first that supports the URI (KServe's own `default` has no
    securityContext when installed from kserve.yaml)."""
    predictor = copy.deepcopy(service["spec"]["predictor"])
    containers = predictor.pop("containers")
    for key in ("minReplicas", "maxReplicas", "storageContainerName"):
        predictor.pop(key, None)
    (user,) = [c for c in containers if c["name"] == "kserve-container"]
    uri = next(e["value"] for e in user.get("env", []) if e["name"] == "STORAGE_URI")
    initializer = {
        "name": "storage-initializer",
        "image": "kserve/storage-initializer:v0.20.0",
        "args": [uri, "/mnt/models"],
        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "volumeMounts": [{"name": "kserve-provision-location", "mountPath": "/mnt/models"}],
    }
    chosen = service["spec"]["predictor"].get("storageContainerName", "default")
    if chosen not in storage_containers:
        raise KeyError(
            f"ClusterStorageContainer {chosen!r} does not exist: KServe's pod webhook refuses every "
            "predictor pod, and the InferenceService stays pending"
        )
    initializer = _merge_container(initializer, storage_containers[chosen]["spec"]["container"])
    user.setdefault("volumeMounts", []).append(
        {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True}
    )
    spec = {**predictor, "initContainers": [initializer], "containers": containers}
    spec["volumes"] = [*predictor.get("volumes", []), _emptydir("kserve-provision-location")]
    return {"metadata": {"name": f"{service['metadata']['name']}-predictor"}, "spec": spec}


# What KServe's kserve.yaml (kustomize install) ships as ClusterStorageContainer `default`
# (config/storagecontainers/default.yaml): no securityContext. (The Helm chart's carries its
# kserve.storage.containerSecurityContext, which has no seccompProfile unless set, as cluster-conf does.)
KSERVE_DEFAULT_STORAGE_CONTAINER = {
    "metadata": {"name": "default"},
    "spec": {
        "container": {"name": "storage-initializer", "image": "kserve/storage-initializer:v0.20.0"},
        "supportedUriFormats": [{"prefix": "s3://"}],
        "workloadType": "initContainer",
    },
}

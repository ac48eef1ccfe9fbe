"""cluster-conf/: every Kubernetes object is valid against the Kubernetes API schemas (kubernetes-validate,
strict: unknown fields fail), names agree with what the generated workflows use, ServiceAccounts have least
privilege, no Secret value is committed, GitOps installs pinned releases in an order that holds, and the
demo S3's serving keys can do only what the inference server needs (checked against a real SeaweedFS)."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from botocore.exceptions import ClientError

from mlcore.params import load_params
from mlcore.storage.seaweed import Credentials, LocalS3Server
from tests.helpers import REPO_ROOT, free_port_block
from workflows.pipeline import ARTIFACT_GC_ACCOUNT, GIT_SECRET, NAMESPACE, S3_SECRET, SERVICE_ACCOUNT
from workflows.pods import UID
from workflows.serving import DEPLOYER_ACCOUNT, FEEDBACK_SECRET, SERVING_ACCOUNT, SERVING_SECRET, STORAGE_CONTAINER

CLUSTER_CONF = REPO_ROOT / "cluster-conf"
KUBERNETES_VERSION = "1.33"
ARGO_RELEASE = "v4.1.2"  # the release whose CRDs and JSON schema validate argo/ (tests/argo_schema/SOURCE.md)
CONTROLLER_CONFIG = CLUSTER_CONF / "argo-workflows" / "workflow-controller-configmap.yaml"
CUSTOM_RESOURCES = {"argoproj.io/v1alpha1": "Application", "serving.kserve.io/v1alpha1": "ClusterStorageContainer"}


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# kustomization.yaml files and Argo CD's argocd-cm patch fragment are not objects
MANIFESTS = sorted(p for p in CLUSTER_CONF.rglob("*.yaml") if p.name != "kustomization.yaml" and "patch" not in p.name)
OBJECTS = [(path, doc) for path in MANIFESTS for doc in documents(path)]


def by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in OBJECTS if doc["kind"] == kind]


def named(kind: str, name: str) -> dict:
    return next(doc for doc in by_kind(kind) if doc["metadata"]["name"] == name)


@pytest.mark.parametrize(("path", "obj"), OBJECTS, ids=lambda v: v.name if isinstance(v, Path) else v["kind"])
def test_kubernetes_objects_are_valid(path, obj):
    if obj["apiVersion"] in CUSTOM_RESOURCES:  # a CRD: no schema in kubernetes-validate
        assert obj["kind"] == CUSTOM_RESOURCES[obj["apiVersion"]]
        return
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_kustomizations_list_existing_files_and_pinned_remote_bases():
    for kustomization in CLUSTER_CONF.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for resource in spec.get("resources", []):
            if resource.startswith("https://"):
                assert "?ref=v" in resource, f"{kustomization}: {resource} must name a release tag"
                continue
            assert (kustomization.parent / resource).is_file(), f"{kustomization}: {resource} does not exist"
        for patch in spec.get("patches", []):
            assert (kustomization.parent / patch["path"]).is_file(), f"{kustomization}: {patch} does not exist"


def test_names_match_the_generated_workflows_and_the_inference_service():
    assert [ns["metadata"]["name"] for ns in by_kind("Namespace")] == [NAMESPACE]
    assert {sa["metadata"]["name"] for sa in by_kind("ServiceAccount")} == {
        SERVICE_ACCOUNT, DEPLOYER_ACCOUNT, ARTIFACT_GC_ACCOUNT, SERVING_ACCOUNT,
    }  # fmt: skip
    assert {s["metadata"]["name"] for s in by_kind("Secret")} == {
        S3_SECRET,
        SERVING_SECRET,
        GIT_SECRET,
        FEEDBACK_SECRET,
    }
    assert [c["metadata"]["name"] for c in by_kind("ClusterStorageContainer")] == [STORAGE_CONTAINER]
    ours = [doc for path, doc in OBJECTS if "argo-workflows" not in path.parts]
    namespaced = [doc for doc in ours if doc["kind"] not in ("Namespace", "Application", "ClusterStorageContainer")]
    assert {doc["metadata"]["namespace"] for doc in namespaced} == {NAMESPACE}


def test_artifact_repository_is_the_workflows_default_s3_and_archives_logs():
    s3 = load_params(REPO_ROOT / "params.yaml").cluster.s3
    config_map = named("ConfigMap", "artifact-repositories")
    assert config_map["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"] == "mlcore-s3"
    repository = yaml.safe_load(config_map["data"]["mlcore-s3"])
    assert repository["archiveLogs"] is True  # successful pods are deleted at once (podGC)
    assert repository["s3"]["bucket"] == s3.bucket
    assert "http://" + repository["s3"]["endpoint"] == s3.endpoint and repository["s3"]["insecure"] is True
    assert repository["s3"]["accessKeySecret"]["name"] == repository["s3"]["secretKeySecret"]["name"] == S3_SECRET
    assert "{{workflow.name}}" in repository["s3"]["keyFormat"]


def _role_of(account: str) -> list[dict]:
    binding = next(b for b in by_kind("RoleBinding") if b["subjects"][0]["name"] == account)
    return named("Role", binding["roleRef"]["name"])["rules"]


def test_service_accounts_have_least_privilege():
    results = {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
    assert _role_of(SERVICE_ACCOUNT) == [results]  # stage pods: no InferenceService, no Secret
    assert _role_of(DEPLOYER_ACCOUNT) == [
        results,
        {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": ["get", "create", "patch"]},
    ]
    assert all(rule["apiGroups"] == ["argoproj.io"] for rule in _role_of(ARTIFACT_GC_ACCOUNT))
    assert not by_kind("ClusterRoleBinding") and not by_kind("ClusterRole")
    assert not any("secrets" in rule["resources"] for role in by_kind("Role") for rule in role["rules"])
    serving = named("ServiceAccount", SERVING_ACCOUNT)
    assert serving["automountServiceAccountToken"] is False and serving["secrets"] == [{"name": SERVING_SECRET}]
    assert not [b for b in by_kind("RoleBinding") if b["subjects"][0]["name"] == SERVING_ACCOUNT]


def test_secret_templates_hold_no_values_and_the_serving_one_tells_kserve_the_endpoint():
    for secret in by_kind("Secret"):
        assert set(secret["stringData"].values()) == {""}, f"{secret['metadata']['name']} has a committed value"
        assert "data" not in secret
    annotations = named("Secret", SERVING_SECRET)["metadata"]["annotations"]
    s3 = load_params(REPO_ROOT / "params.yaml").cluster.s3
    assert "http://" + annotations["serving.kserve.io/s3-endpoint"] == s3.endpoint
    assert annotations["serving.kserve.io/s3-usehttps"] == "0"


def test_controller_configuration_pins_every_argo_image_and_secures_the_executor():
    kustomization = yaml.safe_load((CLUSTER_CONF / "argo-workflows" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [
        f"https://github.com/argoproj/argo-workflows//manifests/cluster-install?ref={ARGO_RELEASE}"
    ]
    assert {image["name"]: image["newTag"] for image in kustomization["images"]} == {
        "quay.io/argoproj/workflow-controller": ARGO_RELEASE, "quay.io/argoproj/argocli": ARGO_RELEASE,
    }  # fmt: skip
    data = yaml.safe_load(CONTROLLER_CONFIG.read_text())["data"]
    executor = yaml.safe_load(data["executor"])
    assert executor["image"] == f"quay.io/argoproj/argoexec:{ARGO_RELEASE}-nonroot"  # USER 8737; plain runs as root
    assert executor["securityContext"]["allowPrivilegeEscalation"] is False
    assert yaml.safe_load(data["workflowRestrictions"])["templateReferencing"] == "Strict"  # Secure: see the file
    assert executor["resources"]["requests"] == executor["resources"]["limits"]  # Guaranteed QoS
    # init writes input artifacts into the pod's volumes with mode 0700 (workflow/executor/executor.go): it must
    # run as the stages' uid, which it inherits from the pod when the executor sets none
    assert executor["securityContext"].get("runAsUser", UID) == UID
    assert yaml.safe_load(data["failedPodRestart"])["enabled"] is True


def _wave(app: dict) -> int:
    return int(app["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def test_one_root_application_syncs_every_release_in_order():
    """App of apps: sync-waves order child Applications only under a parent, and only once Argo CD can assess
    an Application's health (argocd-cm-patch.yaml)."""
    apps_dir = CLUSTER_CONF / "argocd" / "apps"
    root = documents(CLUSTER_CONF / "argocd" / "root.yaml")[0]
    assert root["spec"]["source"]["path"] == "cluster-conf/argocd/apps"
    patch = yaml.safe_load((CLUSTER_CONF / "argocd" / "argocd-cm-patch.yaml").read_text())
    assert "resource.customizations.health.argoproj.io_Application" in patch["data"]
    apps = {doc["metadata"]["name"]: doc for path in apps_dir.glob("*.yaml") for doc in documents(path)}
    waves = {name: _wave(app) for name, app in apps.items()}
    assert waves["cert-manager"] < waves["kserve-crd"] < waves["kserve"] < waves["mlcore-base"]
    assert waves["argo-workflows"] < waves["mlcore-base"] < waves["mlcore-workflows"]
    for name, app in apps.items():
        source, policy = app["spec"]["source"], app["spec"]["syncPolicy"]
        assert policy["retry"]["limit"] > 0, f"{name}: a failed auto-sync must be retried"
        if "github.com/example/mlcore" in source["repoURL"]:
            assert (REPO_ROOT / source["path"]).is_dir(), f"{name}: {source['path']} does not exist"
        else:
            assert source["targetRevision"].startswith("v") and source["targetRevision"].count(".") == 2
    assert apps["argo-workflows"]["spec"]["source"]["path"] == "cluster-conf/argo-workflows"


def test_demo_s3_serving_keys_read_releases_write_feedback_and_nothing_else(tmp_path):
    """The identities the demo S3 pod writes, on a real local SeaweedFS server."""
    config_map = named("ConfigMap", "mlcore-s3-identities")
    template = config_map["data"]["identities.json"]
    keys = {"PIPELINE_KEY": "pipelinekey", "PIPELINE_SECRET": "pipelinesecret0123456789",
            "SERVING_KEY": "servingkey", "SERVING_SECRET": "servingsecret0123456789"}  # fmt: skip
    for name, value in keys.items():
        template = template.replace(f"${{{name}}}", value)
    identities = json.loads(template)["identities"]
    (pipeline,) = [i for i in identities if i["name"] == "pipeline"]
    server = LocalS3Server(tmp_path / "s3", port=free_port_block(), bucket="mlcore")
    server.start(Credentials(keys["PIPELINE_KEY"], keys["PIPELINE_SECRET"]), [i for i in identities if i != pipeline])
    try:
        admin = server.client(Credentials(keys["PIPELINE_KEY"], keys["PIPELINE_SECRET"]))
        serving = server.client(Credentials(keys["SERVING_KEY"], keys["SERVING_SECRET"]))
        admin.put_object(Bucket="mlcore", Key="dvcstore/files/md5/ab/cdef", Body=b"training data")
        admin.put_object(Bucket="mlcore", Key="serving/pet-segmenter/abc/release.json", Body=b"{}")
        assert serving.get_object(Bucket="mlcore", Key="serving/pet-segmenter/abc/release.json")["Body"].read() == b"{}"
        serving.put_object(Bucket="mlcore", Key="feedback/images/x.jpg", Body=b"jpeg")
        for forbidden in (
            lambda: serving.get_object(Bucket="mlcore", Key="dvcstore/files/md5/ab/cdef"),
            lambda: serving.put_object(Bucket="mlcore", Key="dvcstore/files/md5/ab/cdef", Body=b"poison"),
            lambda: serving.put_object(Bucket="mlcore", Key="serving/pet-segmenter/abc/release.json", Body=b"x"),
            lambda: serving.list_objects_v2(Bucket="mlcore"),
        ):
            with pytest.raises(ClientError, match="AccessDenied"):
                forbidden()
    finally:
        server.stop()


# Keys of Argo v4.1.2's controller Config (config/config.go): the controller parses its ConfigMap strictly and
# exits on an unknown key, at any depth.
CONTROLLER_KEYS = {"executor", "workflowRestrictions", "failedPodRestart", "artifactRepository", "metricsConfig",
                   "workflowDefaults", "parallelism", "namespaceParallelism", "podGCGracePeriodSeconds"}  # fmt: skip


def test_controller_configuration_parses_as_argo_parses_it():
    data = yaml.safe_load(CONTROLLER_CONFIG.read_text())["data"]
    assert set(data) <= CONTROLLER_KEYS
    executor = yaml.safe_load(data["executor"])  # a corev1.Container: validated as one, strictly
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "executor"},
           "spec": {"containers": [{"name": "wait", **executor}]}}  # fmt: skip
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    assert set(yaml.safe_load(data["workflowRestrictions"])) == {"templateReferencing"}
    assert set(yaml.safe_load(data["failedPodRestart"])) <= {"enabled", "maxRestarts"}
    assert set(yaml.safe_load(data["metricsConfig"])) <= {"enabled", "path", "port", "metricsTTL", "ignoreErrors",
                                                          "secure", "modifiers", "temporality"}  # fmt: skip

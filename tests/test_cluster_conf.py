"""cluster-conf/: every Kubernetes object is valid against the Kubernetes API schemas
(kubernetes-validate, strict: unknown fields fail), names agree with what the generated workflows use,
the workflow ServiceAccount's RBAC is least-privilege, and no Secret value is committed."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.helpers import REPO_ROOT
from workflows.pipeline import GIT_SECRET, NAMESPACE, S3_SECRET, SERVICE_ACCOUNT
from workflows.serving import SERVING_ACCOUNT

CLUSTER_CONF = REPO_ROOT / "cluster-conf"
KUBERNETES_VERSION = "1.33"
SHARED_ARGO_SOURCE = REPO_ROOT.parent / "shared" / "argo" / "SOURCE.md"


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


MANIFESTS = sorted(p for p in CLUSTER_CONF.rglob("*.yaml") if p.name != "kustomization.yaml")
OBJECTS = [(path, doc) for path in MANIFESTS for doc in documents(path)]


def by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in OBJECTS if doc["kind"] == kind]


@pytest.mark.parametrize(("path", "obj"), OBJECTS, ids=lambda v: v.name if isinstance(v, Path) else v["kind"])
def test_kubernetes_objects_are_valid(path, obj):
    if obj["apiVersion"].startswith("argoproj.io"):  # a CRD: no schema in kubernetes-validate
        assert obj["kind"] == "Application" and {"project", "source", "destination"} <= obj["spec"].keys()
        return
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_kustomizations_list_existing_files():
    for kustomization in CLUSTER_CONF.rglob("kustomization.yaml"):
        for resource in yaml.safe_load(kustomization.read_text())["resources"]:
            assert (kustomization.parent / resource).is_file(), f"{kustomization}: {resource} does not exist"


def test_names_match_the_generated_workflows():
    assert [ns["metadata"]["name"] for ns in by_kind("Namespace")] == [NAMESPACE]
    assert [sa["metadata"]["name"] for sa in by_kind("ServiceAccount")] == [SERVICE_ACCOUNT, SERVING_ACCOUNT]
    assert {s["metadata"]["name"] for s in by_kind("Secret")} == {S3_SECRET, GIT_SECRET}
    namespaced = [doc for _, doc in OBJECTS if doc["kind"] not in ("Namespace", "Application")]
    assert {doc["metadata"]["namespace"] for doc in namespaced} == {NAMESPACE}
    (config_map,) = by_kind("ConfigMap")
    assert config_map["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"] == "mlcore-s3"
    s3 = yaml.safe_load(config_map["data"]["mlcore-s3"])["s3"]
    assert s3["accessKeySecret"]["name"] == s3["secretKeySecret"]["name"] == S3_SECRET
    assert "{{workflow.name}}" in s3["keyFormat"]


def test_service_accounts_have_least_privilege():
    binding = next(b for b in by_kind("RoleBinding") if b["subjects"][0]["name"] == SERVICE_ACCOUNT)
    role = next(r for r in by_kind("Role") if r["metadata"]["name"] == binding["roleRef"]["name"])
    assert role["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
        {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": ["get", "create", "patch"]},
    ]
    assert not by_kind("ClusterRoleBinding")
    serving = next(sa for sa in by_kind("ServiceAccount") if sa["metadata"]["name"] == SERVING_ACCOUNT)
    assert serving["automountServiceAccountToken"] is False and serving["secrets"] == [{"name": S3_SECRET}]
    assert not [b for b in by_kind("RoleBinding") if b["subjects"][0]["name"] == SERVING_ACCOUNT]


def test_secret_templates_hold_no_values():
    for secret in by_kind("Secret"):
        assert set(secret["stringData"].values()) == {""}, f"{secret['metadata']['name']} has a committed value"
        assert "data" not in secret


def test_argo_cd_installs_a_pinned_argo_workflows_and_this_projects_templates():
    apps = {app["metadata"]["name"]: app["spec"]["source"] for app in by_kind("Application")}
    argo = apps["argo-workflows"]
    assert argo["repoURL"] == "https://github.com/argoproj/argo-workflows.git"
    assert argo["targetRevision"].startswith("v") and argo["targetRevision"].count(".") == 2  # a release tag
    if SHARED_ARGO_SOURCE.exists():  # the release whose CRDs and schema validate argo/
        assert f"`{argo['targetRevision']}`" in SHARED_ARGO_SOURCE.read_text()
    ours = [source for name, source in apps.items() if name.startswith("mlcore")]
    assert {source["path"] for source in ours} >= {"cluster-conf/base", "argo"}
    for source in ours:
        assert (REPO_ROOT / source["path"]).is_dir()

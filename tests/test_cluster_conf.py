"""cluster-conf/: every Kubernetes object is valid against the Kubernetes API schemas (kubernetes-validate,
strict: unknown fields fail), names agree with what the generated workflows use, ServiceAccounts have least
privilege, no Secret value is committed, GitOps installs pinned releases in an order that holds, and the
demo S3's serving keys can do only what the inference server needs (checked against a real SeaweedFS).
The optional Argo Events objects (cluster-conf/events) are checked against the field names and types of Argo
Events' Go types, the pods its controller makes of them against Pod Security `restricted`, and the demo S3's
notifications against a real SeaweedFS."""

from __future__ import annotations

import json
import re
import threading
import time
import tomllib
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import kubernetes_validate
import pytest
import yaml
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.exceptions import ClientError

from mlcore.params import load_params
from mlcore.storage.seaweed import Credentials, LocalS3Server
from tests.helpers import REPO_ROOT, free_port_block
from tests.pod_security import violations
from workflows.names import NAMESPACE
from workflows.pipeline import ARTIFACT_GC_ACCOUNT, GIT_SECRET, S3_SECRET, SERVICE_ACCOUNT
from workflows.pods import UID
from workflows.retrain import RETRAIN, RETRAIN_ACCOUNT
from workflows.serving import DEPLOYER_ACCOUNT, FEEDBACK_SECRET, SERVING_ACCOUNT, SERVING_SECRET, STORAGE_CONTAINER

CLUSTER_CONF = REPO_ROOT / "cluster-conf"
KUBERNETES_VERSION = "1.33"
ARGO_RELEASE = "v4.1.2"  # the release whose CRDs and JSON schema validate argo/ (tests/argo_schema/SOURCE.md)
CONTROLLER_CONFIG = CLUSTER_CONF / "argo-workflows" / "workflow-controller-configmap.yaml"

# cluster-conf/events (optional; the workflows do not name these)
ARGO_EVENTS_RELEASE = "v1.9.11"  # the release whose Go types ARGO_EVENTS_TYPES excerpts
ARGO_EVENTS_KINDS = {"EventSource", "Sensor", "EventBus"}
EVENT_SOURCE = "mlcore-inflow"
SENSOR_ACCOUNT = "mlcore-retrain-sensor"
EVENTS_ACCOUNT = "mlcore-events"  # the event source's and the event bus's pods: no API access
EVENTS_SECRET = "mlcore-s3-events"  # key `token`: the bearer token the S3 server sends with its notifications

CUSTOM_RESOURCES = {  # CRDs: no schema in kubernetes-validate
    ("argoproj.io/v1alpha1", "Application"),
    ("serving.kserve.io/v1alpha1", "ClusterStorageContainer"),
    *(("argoproj.io/v1alpha1", kind) for kind in ARGO_EVENTS_KINDS),
}


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
    if obj["apiVersion"] in {api for api, _ in CUSTOM_RESOURCES}:
        assert (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES
        if obj["kind"] in ARGO_EVENTS_KINDS:  # their CRDs preserve unknown fields: the Go types decide
            assert _argo_events_problems(obj["kind"], obj, obj["kind"]) == []
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
        SERVICE_ACCOUNT,
        DEPLOYER_ACCOUNT,
        ARTIFACT_GC_ACCOUNT,
        SERVING_ACCOUNT,
        RETRAIN_ACCOUNT,
        SENSOR_ACCOUNT,
        EVENTS_ACCOUNT,
    }
    assert {s["metadata"]["name"] for s in by_kind("Secret")} == {
        S3_SECRET,
        SERVING_SECRET,
        GIT_SECRET,
        FEEDBACK_SECRET,
        EVENTS_SECRET,
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
    # argoexec resource apply + successCondition: kubectl apply (GET, then create or patch), then GETs of the object
    assert _role_of(RETRAIN_ACCOUNT) == [
        results,
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["get", "create", "patch"]},
    ]
    # Argo Events' argoWorkflow trigger: `argo submit` (validates the workflowTemplateRef), then a List
    assert _role_of(SENSOR_ACCOUNT) == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create", "list"]},
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtemplates"], "verbs": ["get"]},
    ]
    assert not by_kind("ClusterRoleBinding") and not by_kind("ClusterRole")
    assert not any("secrets" in rule["resources"] for role in by_kind("Role") for rule in role["rules"])
    serving = named("ServiceAccount", SERVING_ACCOUNT)
    assert serving["automountServiceAccountToken"] is False and serving["secrets"] == [{"name": SERVING_SECRET}]
    assert named("ServiceAccount", EVENTS_ACCOUNT)["automountServiceAccountToken"] is False
    for account in (SERVING_ACCOUNT, EVENTS_ACCOUNT):
        assert not [b for b in by_kind("RoleBinding") if b["subjects"][0]["name"] == account]


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
        "quay.io/argoproj/workflow-controller": ARGO_RELEASE,
        "quay.io/argoproj/argocli": ARGO_RELEASE,
    }
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
    keys = {
        "PIPELINE_KEY": "pipelinekey",
        "PIPELINE_SECRET": "pipelinesecret0123456789",
        "SERVING_KEY": "servingkey",
        "SERVING_SECRET": "servingsecret0123456789",
    }
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
CONTROLLER_KEYS = {
    "executor",
    "workflowRestrictions",
    "failedPodRestart",
    "artifactRepository",
    "metricsConfig",
    "workflowDefaults",
    "parallelism",
    "namespaceParallelism",
    "podGCGracePeriodSeconds",
}


def test_controller_configuration_parses_as_argo_parses_it():
    data = yaml.safe_load(CONTROLLER_CONFIG.read_text())["data"]
    assert set(data) <= CONTROLLER_KEYS
    executor = yaml.safe_load(data["executor"])  # a corev1.Container: validated as one, strictly
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "executor"},
        "spec": {"containers": [{"name": "wait", **executor}]},
    }
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    assert set(yaml.safe_load(data["workflowRestrictions"])) == {"templateReferencing"}
    assert set(yaml.safe_load(data["failedPodRestart"])) <= {"enabled", "maxRestarts"}
    assert set(yaml.safe_load(data["metricsConfig"])) <= {
        "enabled",
        "path",
        "port",
        "metricsTTL",
        "ignoreErrors",
        "secure",
        "modifiers",
        "temporality",
    }


# Argo Events v1.9.11 (api/jsonschema/schema.json, generated from pkg/apis/events/v1alpha1): every field of each type
# the manifests of cluster-conf/events reach, as name:type. Types: str, int, bool, any; a name of this table; [T] a
# list, {T} a map; k8s a Kubernetes type, checked in the pods the controller makes (_argo_events_pods). A bare name
# is a field of the Go type whose type is not excerpted here: add it from the schema before using the field.
ARGO_EVENTS_TYPES = {
    "EventSource": "apiVersion:str kind:str metadata:k8s spec:EventSourceSpec status",
    "EventSourceSpec": (
        "amqp azureEventsHub azureQueueStorage azureServiceBus bitbucket bitbucketserver calendar emitter "
        "eventBusName:str file generic gerrit github gitlab hdfs kafka minio mns mqtt nats nsq pubSub pulsar redis "
        "redisStream replicas:int resource service:Service sftp slack sns sqs storageGrid stripe template:Template "
        "webhook:{WebhookEventSource}"
    ),
    "Template": (
        "affinity:k8s container:Container imagePullSecrets:[k8s] metadata nodeSelector:{str} priority:int "
        "priorityClassName:str securityContext:k8s serviceAccountName:str tolerations:[k8s] volumes:[k8s]"
    ),
    "Container": "env:[k8s] envFrom:[k8s] imagePullPolicy:str resources:k8s securityContext:k8s volumeMounts:[k8s]",
    "Service": "clusterIP:str metadata ports:[k8s]",
    "WebhookEventSource": (
        "authSecret:SecretKeySelector endpoint:str filter maxPayloadSize:int metadata:{str} method:str port:str "
        "serverCertSecret:SecretKeySelector serverKeySecret:SecretKeySelector url:str"
    ),
    "SecretKeySelector": "key:str name:str optional:bool",
    "Sensor": "apiVersion:str kind:str metadata:k8s spec:SensorSpec status",
    "SensorSpec": (
        "dependencies:[EventDependency] errorOnFailedRound:bool eventBusName:str loggingFields:{str} replicas:int "
        "revisionHistoryLimit:int template:Template triggers:[Trigger]"
    ),
    "EventDependency": "eventName:str eventSourceName:str filters filtersLogicalOperator:str name:str transform",
    "Trigger": (
        "atLeastOnce:bool dlqTrigger:Trigger parameters:[TriggerParameter] policy rateLimit:RateLimit retryStrategy "
        "template:TriggerTemplate"
    ),
    "TriggerTemplate": (
        "argoWorkflow:ArgoWorkflowTrigger awsLambda azureEventHubs azureServiceBus conditions:str conditionsReset "
        "custom email http k8s kafka log name:str nats openWhisk pulsar slack"
    ),
    "ArgoWorkflowTrigger": "args:[str] operation:str parameters:[TriggerParameter] source:ArtifactLocation",
    "ArtifactLocation": "configmap:k8s file git inline:str resource:any s3 url",
    "TriggerParameter": "dest:str operation:str src:TriggerParameterSource",
    "TriggerParameterSource": (
        "contextKey:str contextTemplate:str dataKey:str dataTemplate:str dependencyName:str useRawData:bool value:str"
    ),
    "RateLimit": "requestsPerUnit:int unit:str",
    "EventBus": "apiVersion:str kind:str metadata:k8s spec:EventBusSpec status",
    "EventBusSpec": "jetstream:JetStreamBus jetstreamExotic kafka nats",
    "JetStreamBus": (
        "affinity:k8s containerTemplate:ContainerTemplate imagePullSecrets:[k8s] maxPayload:str metadata "
        "metricsContainerTemplate:ContainerTemplate nodeSelector:{str} persistence priority:int priorityClassName:str "
        "reloaderContainerTemplate:ContainerTemplate replicas:int securityContext:k8s serviceAccountName:str "
        "settings:str startArgs:[str] streamConfig:str tolerations:[k8s] version:str"
    ),
    "ContainerTemplate": "imagePullPolicy:str resources:k8s securityContext:k8s",
}
SCALARS = {"str": str, "int": int, "bool": bool}


def _argo_events_problems(kind: str, value, path: str) -> list[str]:
    """Every field of `value` that the Go type `kind` lacks or types otherwise (decoding into it would fail or,
    since the CRDs preserve unknown fields, silently drop the field)."""
    if kind[0] in "[{":
        if not isinstance(value, list if kind[0] == "[" else dict):
            return [f"{path}: must be {'a list' if kind[0] == '[' else 'a map'}"]
        items = enumerate(value) if kind[0] == "[" else value.items()
        return [p for key, item in items for p in _argo_events_problems(kind[1:-1], item, f"{path}[{key}]")]
    if kind in ("any", "k8s"):
        return []
    if kind in SCALARS:
        valid = isinstance(value, SCALARS[kind]) and not (kind == "int" and isinstance(value, bool))
        return [] if valid else [f"{path}: must be {kind}, got {value!r}"]
    if not isinstance(value, dict):
        return [f"{path}: must be an object ({kind})"]
    fields = dict(field.partition(":")[::2] for field in ARGO_EVENTS_TYPES[kind].split())
    found = []
    for key, item in value.items():
        if key not in fields:
            found.append(f"{path}: {kind} has no field {key!r}")
        elif not fields[key]:
            found.append(f"{path}.{key}: its type is not in ARGO_EVENTS_TYPES yet")
        else:
            found += _argo_events_problems(fields[key], item, f"{path}.{key}")
    return found


def test_the_argo_events_check_refuses_what_argo_events_would_not_decode():
    sensor = named("Sensor", RETRAIN)
    broken = json.loads(json.dumps(sensor).replace('"eventSourceName"', '"eventsourceName"'))
    broken["spec"]["triggers"][0]["rateLimit"]["requestsPerUnit"] = "1"
    assert _argo_events_problems("Sensor", broken, "Sensor") == [
        "Sensor.spec.dependencies[0]: EventDependency has no field 'eventsourceName'",
        "Sensor.spec.triggers[0].rateLimit.requestsPerUnit: must be int, got '1'",
    ]
    kustomization = (CLUSTER_CONF / "events" / "kustomization.yaml").read_text()
    assert f"argo-events/{ARGO_EVENTS_RELEASE}/manifests/install.yaml" in kustomization  # the excerpted release


ARGO_EVENTS_IMAGE = f"quay.io/argoproj/argo-events:{ARGO_EVENTS_RELEASE}"
# the controller's config of v1.9.11 (manifests/base/controller-manager/controller-config.yaml): main, reloader, metrics
JETSTREAM_IMAGES = {
    "2.10.29": ("nats:2.10.29", "natsio/nats-server-config-reloader:0.14.0", "natsio/prometheus-nats-exporter:0.14.0")
}
POD_FIELDS = (
    "serviceAccountName",
    "volumes",
    "securityContext",
    "nodeSelector",
    "tolerations",
    "affinity",
    "imagePullSecrets",
    "priorityClassName",
    "priority",
)


def _secret_names(value) -> set[str]:
    """The Secrets the SecretKeySelectors in `value` name (the controller mounts each: GenerateSecretVolumeSpecs)."""
    if isinstance(value, list):
        return {name for item in value for name in _secret_names(item)}
    if not isinstance(value, dict):
        return set()
    if {"name", "key"} <= value.keys() <= {"name", "key", "optional"}:
        return {value["name"]}
    return {name for item in value.values() for name in _secret_names(item)}


def _pod(name: str, spec: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


def _argo_events_pods() -> dict[str, dict]:
    """The pods Argo Events' controller makes of the event source, the sensor (pkg/reconciler/{eventsource,sensor}/
    resource.go, buildDeploymentSpec) and the event bus (eventbus/installer/jetstream.go, buildStatefulSetSpec):
    the template's pod fields as they are, its container fields merged into the controller's container, an
    emptyDir on /tmp and every Secret a SecretKeySelector names mounted as a volume."""
    pods = {}
    for kind, name, command in (
        ("EventSource", EVENT_SOURCE, "eventsource-service"),
        ("Sensor", RETRAIN, "sensor-service"),
    ):
        obj = named(kind, name)
        template = obj["spec"]["template"]
        secrets = sorted(_secret_names(obj["spec"]))
        container = {
            "name": "main",
            "image": ARGO_EVENTS_IMAGE,
            "args": [command],
            "ports": [{"name": "metrics", "containerPort": 7777}],
            **template.get("container", {}),
        }
        container["volumeMounts"] = [*container.get("volumeMounts", []), {"name": "tmp", "mountPath": "/tmp"}] + [
            {"name": f"secret-{s}", "readOnly": True, "mountPath": f"/argo-events/secrets/{s}"} for s in secrets
        ]
        spec = {field: template[field] for field in POD_FIELDS if field in template}
        spec["volumes"] = [*spec.get("volumes", []), {"name": "tmp", "emptyDir": {}}] + [
            {"name": f"secret-{s}", "secret": {"secretName": s}} for s in secrets
        ]
        pods[kind] = _pod(name, {**spec, "containers": [container]})
    bus = named("EventBus", "default")["spec"]["jetstream"]
    images = JETSTREAM_IMAGES[bus["version"]]
    mounts = [{"name": "config-volume", "mountPath": "/etc/nats-config"}, {"name": "pid", "mountPath": "/var/run/nats"}]
    ports = {"main": [4222, 6222, 8222], "reloader": [], "metrics": [7777]}
    containers = [
        {
            "name": name,
            "image": image,
            "ports": [{"containerPort": port} for port in ports[name]],
            "volumeMounts": [] if name == "metrics" else mounts,
            **bus.get(template, {}),
        }
        for name, image, template in zip(
            ports, images, ("containerTemplate", "reloaderContainerTemplate", "metricsContainerTemplate"), strict=True
        )
    ]
    containers[0]["volumeMounts"] = [*mounts, {"name": "js-data", "mountPath": "/data/jetstream"}]
    volumes = [
        {"name": "pid", "emptyDir": {}},
        {
            "name": "config-volume",
            "projected": {
                "sources": [
                    {"configMap": {"name": "eventbus-default-js-config"}},
                    {"secret": {"name": "eventbus-default-js-server"}},
                ]
            },
        },
        {"name": "js-data", "emptyDir": {}},
    ]
    spec = {field: bus[field] for field in POD_FIELDS if field in bus}
    pods["EventBus"] = _pod(
        "eventbus-default-js-0", {**spec, "shareProcessNamespace": True, "containers": containers, "volumes": volumes}
    )
    return pods


@pytest.mark.parametrize("kind", sorted(ARGO_EVENTS_KINDS))
def test_argo_events_pods_are_valid_and_admitted_under_restricted(kind):
    pod = _argo_events_pods()[kind]
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    assert violations(pod, {}) == []  # runAsUser is set: no image's USER needs to be known
    account = named("ServiceAccount", pod["spec"]["serviceAccountName"])
    assert account["automountServiceAccountToken"] is (kind == "Sensor")  # only the sensor calls the API


def test_event_source_service_and_bus_agree():
    source, bus = named("EventSource", EVENT_SOURCE), named("EventBus", "default")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{EVENT_SOURCE}-eventsource-svc"},
        "spec": {"ports": source["spec"]["service"]["ports"]},
    }
    kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)
    (webhook,) = source["spec"]["webhook"].values()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [int(webhook["port"])]
    assert webhook["method"] == "POST" and webhook["authSecret"] == {"name": EVENTS_SECRET, "key": "token"}
    assert source["spec"]["eventBusName"] == named("Sensor", RETRAIN)["spec"]["eventBusName"] == "default"
    jetstream = bus["spec"]["jetstream"]
    stream_replicas = yaml.safe_load(jetstream.get("streamConfig", "{}")).get("replicas", 3)  # the controller's 3
    assert jetstream["replicas"] in (1, 3, 4, 5) and stream_replicas <= jetstream["replicas"]  # its validate.go


def test_the_sensor_submits_the_retrain_template_at_most_once_an_hour():
    sensor, source = named("Sensor", RETRAIN), named("EventSource", EVENT_SOURCE)
    assert sensor["spec"]["template"]["serviceAccountName"] == SENSOR_ACCOUNT
    (dependency,) = sensor["spec"]["dependencies"]
    assert dependency["eventSourceName"] == EVENT_SOURCE and dependency["eventName"] in source["spec"]["webhook"]
    (trigger,) = sensor["spec"]["triggers"]
    submit = trigger["template"]["argoWorkflow"]
    assert submit["operation"] == "submit" and not submit.get("args")
    workflow = submit["source"]["resource"]
    assert (workflow["apiVersion"], workflow["kind"]) == ("argoproj.io/v1alpha1", "Workflow")
    assert workflow["spec"] == {"workflowTemplateRef": {"name": RETRAIN}}  # Strict: the template decides all
    assert workflow["metadata"]["namespace"] == NAMESPACE
    # One name an hour: the hour's first submission runs, `argo submit` refuses the others (AlreadyExists).
    hourly = '-{{ .Input.time | substr 0 13 | replace "T" "-" }}'  # sprig, on the event's RFC 3339 UTC time
    assert submit["parameters"] == [
        {
            "src": {"dependencyName": dependency["name"], "contextTemplate": hourly},
            "dest": "metadata.name",
            "operation": "append",
        },
    ]
    name = workflow["metadata"]["name"] + "-" + "2026-01-02T15:04:05Z"[:13].replace("T", "-")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name
    assert "generateName" not in workflow["metadata"]
    assert trigger["atLeastOnce"] is True  # one event at a time, not one goroutine per event
    assert trigger["rateLimit"]["unit"] in ("Second", "Minute", "Hour") and trigger["rateLimit"]["requestsPerUnit"] > 0
    assert "retryStrategy" not in trigger  # a refused duplicate must not be retried


def _notification_config() -> str:
    return named("ConfigMap", "mlcore-s3-identities")["data"]["notification.toml"]


def _inflow_paths() -> list[str]:
    """Where new samples land (params inflow.prefixes), as SeaweedFS's filer names the bucket's objects."""
    params = load_params(REPO_ROOT / "params.yaml")
    return [f"/buckets/{params.cluster.s3.bucket}/{prefix}/" for prefix in params.inflow.prefixes]


def test_demo_s3_notifies_the_event_source_of_new_inflow_objects():
    source = named("EventSource", EVENT_SOURCE)
    (webhook,) = source["spec"]["webhook"].values()
    config = tomllib.loads(_notification_config())["notification"]
    assert set(config) == {"webhook"}  # weed refuses two enabled queues
    webhook_config = config["webhook"]
    port = webhook["port"]
    assert webhook_config == {
        "enabled": True,
        "endpoint": f"http://{EVENT_SOURCE}-eventsource-svc.{NAMESPACE}.svc:{port}{webhook['endpoint']}",
        "bearer_token": "${EVENTS_TOKEN}",
        "event_types": ["create"],
        "path_prefixes": _inflow_paths(),
    }
    (weed,) = named("Deployment", "mlcore-s3")["spec"]["template"]["spec"]["containers"]
    (token,) = [env for env in weed["env"] if env["name"] == "EVENTS_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {**webhook["authSecret"], "optional": True}  # events are optional
    assert "cd /data" in weed["args"][0] and "> /data/notification.toml" in weed["args"][0]


class _Recorder(BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[str, str, dict]]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.posts.append((self.path, self.headers.get("Authorization", ""), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_demo_s3_posts_new_inflow_objects_on_a_real_seaweedfs(tmp_path, monkeypatch):
    """The demo S3's notification.toml, on a real local SeaweedFS (weed reads it from its working directory): new
    objects under the inflow prefixes are POSTed with the bearer token, others are not; and MinIO's
    ListenBucketNotification, what Argo Events' `minio` source would use, is not implemented."""
    expected = {f"{path}images/{i}.jpg" for i, path in enumerate(_inflow_paths())}
    receiver = HTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.posts = []
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = tomllib.loads(_notification_config())["notification"]["webhook"]["endpoint"]
    local = f"http://127.0.0.1:{receiver.server_port}/{endpoint.split('/', 3)[3]}"
    config = _notification_config().replace(endpoint, local).replace("${EVENTS_TOKEN}", "eventstoken0123")
    (tmp_path / "notification.toml").write_text(config)
    monkeypatch.chdir(tmp_path)
    credentials = Credentials("pipelinekey", "pipelinesecret0123456789")
    bucket = load_params(REPO_ROOT / "params.yaml").cluster.s3.bucket
    server = LocalS3Server(tmp_path / "s3", port=free_port_block(), bucket=bucket)
    server.start(credentials)
    try:
        client = server.client(credentials)
        for key in ["dvcstore/files/md5/ab/cdef", "serving/m/r/release.json", *expected]:
            client.put_object(Bucket=bucket, Key=key.removeprefix(f"/buckets/{bucket}/"), Body=b"x")
        deadline = time.monotonic() + 15
        while not expected <= {body["key"] for _, _, body in _Recorder.posts} and time.monotonic() < deadline:
            time.sleep(0.1)
        listen = f"{server.endpoint}/{bucket}?events=s3%3AObjectCreated%3A%2A&prefix=&suffix="
        request = AWSRequest(method="GET", url=listen)
        SigV4Auth(BotoCredentials(credentials.access_key, credentials.secret_key), "s3", "us-east-1").add_auth(request)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(listen, headers=dict(request.headers.items())), timeout=5)
    finally:
        server.stop()
        receiver.shutdown()
    keys = {body["key"] for _, _, body in _Recorder.posts}
    assert expected <= keys
    assert all(key.startswith(tuple(_inflow_paths())) for key in keys), keys  # and their folders
    assert {(path, auth) for path, auth, _ in _Recorder.posts} == {("/seaweedfs", "Bearer eventstoken0123")}
    assert {body["event_type"] for _, _, body in _Recorder.posts} == {"create"}
    assert refused.value.code == 501

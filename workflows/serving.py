"""The KServe InferenceService of a released model: our own V2 server (mlcore.serving) as a custom predictor,
reading the release folder that KServe's storage initializer copies from S3 into /mnt/models.

Our server rather than a stock runtime: it is the code the tests exercise (calibrated outputs at the input
size, encoded images of any size, feedback, metrics), and it speaks the same Open Inference Protocol.
"""

from __future__ import annotations

import argparse

import yaml
from hera.workflows import models as m
from pydantic import BaseModel

from mlcore.commands import git
from mlcore.lockfile import lock_stages
from mlcore.params import Params
from workflows import pods
from workflows.names import NAMESPACE
from workflows.submit import code_commit

SERVING_ACCOUNT = "mlcore-serving"  # no API access; carries SERVING_SECRET for KServe's storage initializer
SERVING_SECRET = "mlcore-serving-s3"  # keys that may only read serving/ and write feedback/ (not the pipeline's)
FEEDBACK_SECRET = "mlcore-serving-feedback"  # key `token`: the bearer token feedback requires (when it is on)
DEPLOYER_ACCOUNT = "mlcore-deployer"  # the deploy task's: the only one allowed to touch InferenceServices
# A ClusterStorageContainer (cluster-conf/base/) whose storage initializer passes the restricted profile.
# KServe v0.20 gives its injected init container no securityContext of its own; it merges the selected
# ClusterStorageContainer's container into it (pkg/webhook/admission/pod/storage_initializer_injector.go), and
# the one that `kserve.yaml` installs as `default` has none.
STORAGE_CONTAINER = "mlcore-restricted"
MODEL_MOUNT = "/mnt/models"
PORT = 8080
# The deploy task waits for KServe's verdict (pkg/apis/serving/v1beta1/inference_service_status.go: Loaded sets
# UpToDate and activeModelState; a storage initializer or server that fails sets BlockedByFailedLoad)
READY_CONDITION = "status.modelStatus.transitionStatus == UpToDate,status.modelStatus.states.activeModelState == Loaded"
FAILED_CONDITION = "status.modelStatus.transitionStatus in (BlockedByFailedLoad,InvalidSpec)"
DEPLOY_TIMEOUT = "15m"  # an image that cannot be pulled or a pod that is never admitted stays Pending, not failed


def storage_prefix(bucket: str, model_name: str, release_md5: str) -> str:
    """Content-addressed: the same release always lands at the same place, a new one never overwrites it."""
    return f"s3://{bucket}/serving/{model_name}/{release_md5.removesuffix('.dir')}"


# Health answers on the event loop, which leaves parsing, decoding and the model to other threads
# (mlcore/serving/app.py): milliseconds under load (bench/serving_load.py), well under a second during the
# largest request the limits allow (tests/test_serving.py). A 2 s timeout is generous. The startup probe covers
# loading TensorFlow and the model (up to 2 minutes) so that liveness needs no initial delay guess.
PROBE_TIMEOUT_S = 2
MEMORY_LIMIT_GIB = 2  # the server's budget per request (mlcore/serving/limits.py) keeps it well under this


def _probe(path: str, period: int, failures: int) -> m.Probe:
    return m.Probe(
        http_get=m.HTTPGetAction(path=path, port=PORT),
        period_seconds=period,
        timeout_seconds=PROBE_TIMEOUT_S,
        failure_threshold=failures,
    )


def _secret(name: str, secret: str, key: str, optional: bool | None = None) -> m.EnvVar:
    selector = m.SecretKeySelector(name=secret, key=key, optional=optional)
    return m.EnvVar(name=name, value_from=m.EnvVarSource(secret_key_ref=selector))


def predictor_container(image: str, storage_uri: str, version: str, feedback_url: str, s3_endpoint: str) -> m.Container:
    """The server's container in Kubernetes' own types (Hera's models of the core API), validated as it is built."""
    return m.Container(
        name="kserve-container",
        image=image,
        command=["python", "-m", "mlcore.serving"],
        args=[
            "--release-dir",
            MODEL_MOUNT,
            "--provenance",
            f"{MODEL_MOUNT}/provenance.json",
            "--version",
            version,
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
        ],
        env=[
            m.EnvVar(name="STORAGE_URI", value=storage_uri),
            m.EnvVar(name="MLCORE_FEEDBACK_URL", value=feedback_url),
            m.EnvVar(name="MLCORE_S3_ENDPOINT", value=s3_endpoint),
            m.EnvVar(name="HOME", value="/tmp"),
            *(_secret(key, SERVING_SECRET, key) for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
            _secret("MLCORE_FEEDBACK_TOKEN", FEEDBACK_SECRET, "token", optional=True),
        ],
        ports=[m.ContainerPort(container_port=PORT, protocol="TCP")],
        startup_probe=_probe("/v2/health/ready", period=2, failures=60),
        readiness_probe=_probe("/v2/health/ready", period=5, failures=2),
        liveness_probe=_probe("/v2/health/live", period=10, failures=3),
        resources=m.ResourceRequirements(
            requests={"cpu": m.Quantity("1"), "memory": m.Quantity(f"{MEMORY_LIMIT_GIB}Gi")},
            limits={"cpu": m.Quantity("2"), "memory": m.Quantity(f"{MEMORY_LIMIT_GIB}Gi")},
        ),
        security_context=pods.container_security_context(),
        volume_mounts=[m.VolumeMount(name="tmp", mount_path="/tmp")],
    )


def inference_service(
    name: str,
    namespace: str,
    image: str,
    storage_uri: str,
    version: str,
    commit: str,
    feedback_url: str,
    s3_endpoint: str,
) -> dict:
    """`feedback_url` empty: feedback off. Set: on, with the token from Secret FEEDBACK_SECRET (the server
    refuses to start without it). KServe's own fields wrap the typed pod: the only typed InferenceService is
    the `kserve` SDK's, which would bring pandas, grpcio and the Kubernetes client for this one object."""
    container = predictor_container(image, storage_uri, version, feedback_url, s3_endpoint)
    metadata = m.ObjectMeta(
        name=name,
        namespace=namespace,
        labels={"app.kubernetes.io/part-of": "mlcore", "mlcore.dev/commit": commit},
        annotations={"mlcore.dev/revision": version, "serving.kserve.io/deploymentMode": "Standard"},
    )
    predictor = {
        "serviceAccountName": SERVING_ACCOUNT,
        "storageContainerName": STORAGE_CONTAINER,
        "minReplicas": 1,
        "securityContext": pods.pod_security_context(),
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [m.Volume(name="tmp", empty_dir=m.EmptyDirVolumeSource())],
    }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _plain(metadata),
        "spec": {"predictor": {key: _plain(value) for key, value in predictor.items()}},
    }


def _plain(value: object) -> object:
    """A typed model (or a list of them) as the manifest's YAML writes it; anything else as it is."""
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_none=True)
    return value


def for_revision(ref: str, image_repo: str | None, bucket: str, s3_endpoint: str, feedback_url: str = "") -> dict:
    """The InferenceService of the release committed at `ref` (its dvc.lock names the release folder)."""

    # a tag the pipeline published has no image of its own: its run's commit has
    commit = code_commit(git("rev-parse", f"{ref}^{{commit}}"))
    params = Params.model_validate(yaml.safe_load(git("show", f"{ref}:params.yaml")))
    stages = lock_stages(git("show", f"{ref}:dvc.lock"))
    if "release" not in stages:
        raise SystemExit(f"error: {ref} has no release in its dvc.lock; run `make run` (the gate must pass) and commit")
    release_md5 = stages["release"]["outs"][0]["md5"]
    name = params.release.model_name
    repository = image_repo or params.cluster.image_repository
    return inference_service(
        name,
        NAMESPACE,
        f"{repository}:{commit}",
        storage_prefix(bucket, name, release_md5),
        ref,
        commit,
        feedback_url,
        s3_endpoint,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="Print the KServe InferenceService of a release: "
        "`make inference-service REF=model@v1.0.0 | kubectl apply -f -`"
    )
    parser.add_argument("ref")
    parser.add_argument("--image-repo", help="default: params.yaml cluster.image_repository at REF")
    parser.add_argument("--bucket", default="mlcore")
    parser.add_argument("--s3-endpoint", default="http://mlcore-s3.mlcore.svc:8333")
    parser.add_argument(
        "--feedback-url",
        default="",
        help="accept feedback into this s3:// prefix (default: off); "
        f"create Secret {FEEDBACK_SECRET} with key token first",
    )
    arguments = parser.parse_args()
    service = for_revision(
        arguments.ref, arguments.image_repo, arguments.bucket, arguments.s3_endpoint, arguments.feedback_url
    )
    print(yaml.safe_dump(service, sort_keys=False), end="")

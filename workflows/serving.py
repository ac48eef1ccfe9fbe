"""The KServe InferenceService of a released model: our own V2 server (mlcore.serving) as a custom predictor,
reading the release folder that KServe's storage initializer copies from S3 into /mnt/models.

Our server rather than a stock runtime: it is the code the tests exercise (calibrated outputs at the input
size, encoded images of any size, feedback, metrics), and it speaks the same Open Inference Protocol.
"""

from __future__ import annotations

SERVING_ACCOUNT = "mlcore-serving"  # carries the mlcore-s3 Secret for KServe's storage initializer
MODEL_MOUNT = "/mnt/models"


def storage_prefix(bucket: str, model_name: str, release_md5: str) -> str:
    """Content-addressed: the same release always lands at the same place, a new one never overwrites it."""
    return f"s3://{bucket}/serving/{model_name}/{release_md5.removesuffix('.dir')}"


def inference_service(name: str, namespace: str, image: str, storage_uri: str, version: str, commit: str,
                      feedback_url: str, s3_endpoint: str) -> dict:  # fmt: skip
    env = [
        {"name": "MLCORE_FEEDBACK_URL", "value": feedback_url},
        {"name": "MLCORE_S3_ENDPOINT", "value": s3_endpoint},
        *({"name": key, "valueFrom": {"secretKeyRef": {"name": "mlcore-s3", "key": key}}}
          for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
    ]  # fmt: skip
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "mlcore", "mlcore.dev/commit": commit},
            "annotations": {"mlcore.dev/revision": version, "serving.kserve.io/deploymentMode": "RawDeployment"},
        },
        "spec": {
            "predictor": {
                "serviceAccountName": SERVING_ACCOUNT,
                "minReplicas": 1,
                "containers": [{
                    "name": "kserve-container",
                    "image": image,
                    "command": ["python", "-m", "mlcore.serving"],
                    "args": ["--release-dir", MODEL_MOUNT, "--provenance", f"{MODEL_MOUNT}/provenance.json",
                             "--version", version, "--host", "0.0.0.0", "--port", "8080"],
                    "env": [{"name": "STORAGE_URI", "value": storage_uri}, *env],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}},
                    "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": 8080}},
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                        "capabilities": {"drop": ["ALL"]}},
                }],
            }
        },
    }  # fmt: skip


def for_revision(ref: str, image_repo: str, bucket: str, s3_endpoint: str) -> dict:
    """The InferenceService of the release committed at `ref` (its dvc.lock names the release folder)."""
    import subprocess

    import yaml

    from mlcore.params import Params
    from workflows.pipeline import NAMESPACE

    def show(path: str) -> str:
        return subprocess.run(["git", "show", f"{ref}:{path}"], check=True, capture_output=True, text=True).stdout

    commit = subprocess.run(["git", "rev-parse", f"{ref}^{{commit}}"], check=True, capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    params = Params.model_validate(yaml.safe_load(show("params.yaml")))
    stages = yaml.safe_load(show("dvc.lock"))["stages"]
    if "release" not in stages:
        raise SystemExit(f"error: {ref} has no release in its dvc.lock; run `make run` (the gate must pass) and commit")
    release_md5 = stages["release"]["outs"][0]["md5"]
    name = params.release.model_name
    return inference_service(name, NAMESPACE, f"{image_repo}:{commit}", storage_prefix(bucket, name, release_md5),
                             ref, commit, f"s3://{bucket}/feedback", s3_endpoint)  # fmt: skip


if __name__ == "__main__":
    import argparse
    import os

    import yaml

    parser = argparse.ArgumentParser(description="Print the KServe InferenceService of a release: "
                                     "`make inference-service REF=model@v1.0.0 | kubectl apply -f -`")  # fmt: skip
    parser.add_argument("ref")
    parser.add_argument("--image-repo", default=os.environ.get("MLCORE_IMAGE_REPO", "ghcr.io/example/mlcore"))
    parser.add_argument("--bucket", default="mlcore")
    parser.add_argument("--s3-endpoint", default="http://mlcore-s3.mlcore.svc:8333")
    arguments = parser.parse_args()
    service = for_revision(arguments.ref, arguments.image_repo, arguments.bucket, arguments.s3_endpoint)
    print(yaml.safe_dump(service, sort_keys=False), end="")

"""How every workflow pod runs: what a `restricted` namespace admits, the writable paths of a read-only
image, retries of what infrastructure kills (and nothing else), and resources from params.yaml.

The image (docker/Dockerfile) runs as uid 1000 with the code and its environment in /opt/mlcore; a task
works in a clone of that repository under the `workspace` emptyDir, so the root filesystem stays
read-only. Argo's own `init`/`wait` containers get their securityContext from the controller
ConfigMap (cluster-conf/argo-workflows/), not from here.
"""

from __future__ import annotations

from hera.workflows import models as m

from mlcore.params import ClusterParams

UID = 1000  # docker/Dockerfile `USER 1000:1000`; numeric, so the kubelet can verify runAsNonRoot
WORKSPACE = "/workspace"  # emptyDir: the task's clone, its DVC cache and data
SCRATCH = "/tmp"  # emptyDir: outputs and inputs Argo exchanges with the pod, tool caches

# Retry what infrastructure does to a pod, never a stage that failed on its own (bad input exits 1 or 2):
# - status Error: the pod was deleted, or Argo's init/wait container failed (workflow/controller/operator.go);
# - exit code 137 (SIGKILL: OOM killer, kubelet after the grace period) or 143 (SIGTERM: drain, preemption);
# - the kubelet's own words when it evicts a pod or shuts its node down (pod.status.message).
# Argo's `Always` policy lets the expression decide for Failed and Error nodes alike (docs/retries.md).
RETRY_EXPRESSION = (
    'lastRetry.status == "Error" || lastRetry.exitCode in ["137", "143"]'
    ' || lastRetry.message matches "(?i)evict|low on resource|node shutdown|preempt"'
)


def retry_strategy(cluster: ClusterParams) -> m.RetryStrategy:
    """No maxDuration: it counts from the first attempt and becomes the retried pod's deadline, so a long
    training would never be retried. The workflow's activeDeadlineSeconds bounds the whole run instead."""
    return m.RetryStrategy(
        limit=cluster.retries,
        retry_policy="Always",
        expression=RETRY_EXPRESSION,
        backoff=m.Backoff(duration="30s", factor=2, cap="10m"),
    )


def pod_security_context() -> m.PodSecurityContext:
    return m.PodSecurityContext(
        run_as_non_root=True,
        run_as_user=UID,
        run_as_group=UID,
        fs_group=UID,
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


def container_security_context() -> m.SecurityContext:
    """Every field the restricted profile checks, set on the container itself as well as the pod."""
    return m.SecurityContext(
        allow_privilege_escalation=False,
        capabilities=m.Capabilities(drop=["ALL"]),
        read_only_root_filesystem=True,
        run_as_non_root=True,
        run_as_user=UID,
        run_as_group=UID,
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


def volumes() -> list[m.Volume]:
    return [m.Volume(name=name, empty_dir=m.EmptyDirVolumeSource()) for name in ("workspace", "scratch")]


def volume_mounts() -> list[m.VolumeMount]:
    return [m.VolumeMount(name="workspace", mount_path=WORKSPACE), m.VolumeMount(name="scratch", mount_path=SCRATCH)]


def writable_paths_environment() -> dict[str, str]:
    """Where git, DVC, Keras and matplotlib write, all on the emptyDirs (the image's HOME is read-only)."""
    return {
        "HOME": f"{SCRATCH}/home",
        "MLCORE_WORKSPACE": f"{WORKSPACE}/repo",
        "DVC_SITE_CACHE_DIR": f"{SCRATCH}/dvc-site-cache",
        "MPLCONFIGDIR": f"{SCRATCH}/matplotlib",
        "XDG_CACHE_HOME": f"{SCRATCH}/cache",
    }


def resources(cluster: ClusterParams, stage: str) -> m.ResourceRequirements:
    """Requests = limits (Guaranteed QoS); ephemeral storage covers the workspace emptyDir (data, DVC cache)."""
    wanted = cluster.resources.get(stage, cluster.resources["default"])
    amounts = {"cpu": wanted.cpu, "memory": wanted.memory, "ephemeral-storage": wanted.ephemeral_storage}
    if wanted.gpu:
        amounts["nvidia.com/gpu"] = str(wanted.gpu)
    quantities = {name: m.Quantity(value) for name, value in amounts.items()}
    return m.ResourceRequirements(requests=quantities, limits=quantities)

"""The Pod Security Standards `restricted` profile, rule by rule, as the Kubernetes admission controller
(and, for the numeric-user rule, the kubelet) enforces it on a namespace labelled
`pod-security.kubernetes.io/enforce: restricted`.

Source: https://kubernetes.io/docs/concepts/security/pod-security-standards/ (Kubernetes 1.33): the
Baseline controls plus the Restricted ones. `violations(pod, image_user)` returns one line per broken rule,
naming the pod, the container and the rule, so a manifest a real cluster would reject fails a test here.
"""

from __future__ import annotations

from collections.abc import Iterator

ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
VOLUME_SOURCE_KEYS = ALLOWED_VOLUME_TYPES | {
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "photonPersistentDisk",
    "image",
}


def _containers(spec: dict) -> Iterator[tuple[str, dict]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(kind) or []:
            yield f"{kind[:-1]} {container['name']}", container


def _effective(pod_context: dict, container_context: dict, key: str):
    """A container's setting, falling back to the pod's (how runAsNonRoot, runAsUser and seccomp inherit)."""
    value = container_context.get(key)
    return pod_context.get(key) if value is None else value


def violations(pod: dict, image_users: dict[str, int] | None = None) -> list[str]:
    """Every restricted-profile rule `pod` breaks. `image_users` maps an image to its numeric USER (an image
    missing there has a user name or none): the kubelet refuses runAsNonRoot unless some uid is numeric."""
    name = pod.get("metadata", {}).get("name", "<pod>")
    spec = pod["spec"]
    pod_context = spec.get("securityContext") or {}
    found: list[str] = []

    def broken(where: str, rule: str) -> None:
        found.append(f"pod {name}, {where}: {rule}")

    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            broken("pod", f"host namespaces: {flag} must be false")
    if pod_context.get("windowsOptions", {}).get("hostProcess"):
        broken("pod", "HostProcess: windowsOptions.hostProcess must be false")
    for sysctl in pod_context.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            broken("pod", f"sysctls: {sysctl['name']} is not in the safe set")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) & VOLUME_SOURCE_KEYS
        if not kinds <= ALLOWED_VOLUME_TYPES:
            broken(f"volume {volume['name']}", f"volume types: {', '.join(sorted(kinds))} is not allowed")
    _check_selinux(pod_context, "pod", broken)
    _check_apparmor(pod_context, "pod", broken)
    for key, value in (pod.get("metadata", {}).get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            broken(f"annotation {key}", f"AppArmor: {value} is not allowed")
    if pod_context.get("runAsUser") == 0:
        broken("pod", "running as non-root user: runAsUser must not be 0")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    if pod_seccomp == "Unconfined":
        broken("pod", "seccomp: Unconfined is not allowed")

    for where, container in _containers(spec):
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            broken(where, "privileged containers: securityContext.privileged must be false")
        if context.get("windowsOptions", {}).get("hostProcess"):
            broken(where, "HostProcess: windowsOptions.hostProcess must be false")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            broken(where, "host ports: hostPort must be unset or 0")
        if context.get("procMount", "Default") != "Default":
            broken(where, "/proc mount type must be Default")
        _check_selinux(context, where, broken)
        _check_apparmor(context, where, broken)
        capabilities = context.get("capabilities") or {}
        added = set(capabilities.get("add") or [])
        if not added <= BASELINE_CAPABILITIES:
            broken(where, f"capabilities (baseline): may not add {', '.join(sorted(added - BASELINE_CAPABILITIES))}")
        if added - {"NET_BIND_SERVICE"}:
            broken(where, "capabilities: only NET_BIND_SERVICE may be added")
        if "ALL" not in (capabilities.get("drop") or []):
            broken(where, "capabilities: drop must include ALL")
        if context.get("allowPrivilegeEscalation") is not False:
            broken(where, "privilege escalation: allowPrivilegeEscalation must be false")
        if _effective(pod_context, context, "runAsNonRoot") is not True:
            broken(where, "running as non-root: runAsNonRoot must be true (pod or container)")
        if context.get("runAsUser") == 0:
            broken(where, "running as non-root user: runAsUser must not be 0")
        seccomp = (_effective(pod_context, context, "seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            broken(where, f"seccomp: profile must be RuntimeDefault or Localhost (pod or container), not {seccomp}")
        if _effective(pod_context, context, "runAsUser") is None and container["image"] not in (image_users or {}):
            broken(where, "kubelet: runAsNonRoot needs a numeric uid (runAsUser, or a numeric USER in the image)")
    return found


def _check_selinux(context: dict, where: str, broken) -> None:
    options = context.get("seLinuxOptions") or {}
    if options.get("type") not in SELINUX_TYPES:
        broken(where, f"SELinux: type {options['type']} is not allowed")
    if options.get("user") or options.get("role"):
        broken(where, "SELinux: user and role must be unset")


def _check_apparmor(context: dict, where: str, broken) -> None:
    profile = (context.get("appArmorProfile") or {}).get("type")
    if profile not in (None, "RuntimeDefault", "Localhost"):
        broken(where, f"AppArmor: {profile} is not allowed")

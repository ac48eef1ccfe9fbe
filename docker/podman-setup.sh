#!/usr/bin/env bash
# Make this (Debian/Ubuntu) machine able to build and run the project image without Docker:
# Debian's podman + buildah (build with `--isolation chroot`, no daemon), mmdebstrap (the local base
# image, docker/local-base.sh), runc, and a containers.conf drop-in. Idempotent: run it again at will.
#   sudo docker/podman-setup.sh
set -euo pipefail

packages=(podman buildah mmdebstrap runc uidmap fuse-overlayfs)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# runc, not crun: crun fails to start containers where the engine lacks CAP_SYS_RESOURCE (VMs,
# nested containers) on hybrid cgroups. The same missing capability means the default ulimits
# (raised from the host's hard limits) cannot be set, so pin ones every container may get.
# Without systemd as PID 1 there is neither a systemd cgroup manager nor a journal.
conf="[containers]
default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]

[engine]
runtime = \"runc\""
if [[ ! -d /run/systemd/system ]]; then
    conf+="
cgroup_manager = \"cgroupfs\"
events_logger = \"file\""
fi

if [[ $(id -u) == 0 ]]; then
    dir=/etc/containers/containers.conf.d
else
    dir=${XDG_CONFIG_HOME:-$HOME/.config}/containers/containers.conf.d
fi
target=$dir/50-mlcore.conf
content="# written by mlcore docker/podman-setup.sh
$conf"
if [[ ! -f $target ]] || [[ $(cat "$target") != "$content" ]]; then
    mkdir -p "$dir"
    printf '%s\n' "$content" >"$target"
    echo "wrote $target"
fi

podman info --format 'podman {{.Version.Version}}, runtime {{.Host.OCIRuntime.Name}}, cgroups {{.Host.CgroupManager}} {{.Host.CgroupsVersion}}, storage {{.Store.GraphDriverName}}'

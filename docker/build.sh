#!/usr/bin/env bash
# `make image`: the project image at HEAD, built from a fresh clone (only committed files, .git
# included), tagged mlcore:<short commit> and mlcore:<commit>.
#   CONTAINER_ENGINE  docker or podman; default: docker when a daemon answers, else podman
#                     (`docker/podman-setup.sh` once; it builds with --isolation chroot, no daemon)
#   BASE_IMAGE        default: the Dockerfile's registry image when it is here or can be pulled, else
#                     the local Debian base (docker/local-base.sh, built on first use)
#   EXTRA_CA_CERTS    a PEM file of extra CAs to trust while downloading (build secret, not kept)
#   IMAGE_NAME        default mlcore
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
commit=$(git rev-parse HEAD)
short=$(git rev-parse --short HEAD)
name=${IMAGE_NAME:-mlcore}
local_base=localhost/mlcore-base:bookworm-py311

engine=${CONTAINER_ENGINE:-}
if [[ -z $engine ]]; then
    if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then
        engine=docker
    elif command -v podman >/dev/null; then
        engine=podman
    else
        echo "error: no Docker daemon answers and podman is not installed (docker/podman-setup.sh installs it)" >&2
        exit 1
    fi
fi

build=("$engine" build)
# podman: no daemon, no user namespace or capabilities beyond the engine's own (VMs, CI containers)
[[ $engine == podman ]] && build+=(--isolation chroot --layers)

base=${BASE_IMAGE:-}
if [[ -z $base ]]; then
    registry_base=$(sed -n 's/^ARG BASE_IMAGE=//p' docker/Dockerfile)
    if "$engine" image inspect "$registry_base" >/dev/null 2>&1; then
        :  # the Dockerfile's default, already here
    elif "$engine" image inspect "$local_base" >/dev/null 2>&1; then
        base=$local_base
    elif timeout 300 "$engine" pull -q "$registry_base" >/dev/null 2>&1; then
        :
    else
        echo "no registry reachable for $registry_base: building $local_base from the Debian mirror" >&2
        ENGINE=$engine docker/local-base.sh "$local_base"
        base=$local_base
    fi
fi
[[ -n $base ]] && build+=(--build-arg "BASE_IMAGE=$base")

if [[ -n ${EXTRA_CA_CERTS:-} ]]; then
    [[ -s $EXTRA_CA_CERTS ]] || { echo "error: EXTRA_CA_CERTS=$EXTRA_CA_CERTS is not a non-empty file" >&2; exit 1; }
    build+=(--secret "id=extra-ca,src=$(realpath "$EXTRA_CA_CERTS")")
fi

[[ -z $(git status --porcelain --untracked-files=no) ]] || echo "note: uncommitted changes are not in the image (it is built from a clone of HEAD)" >&2

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
git clone -q . "$context"
# a detached HEAD is not what a clone checks out
[[ $(git -C "$context" rev-parse HEAD) == "$commit" ]] || git -C "$context" checkout -q --detach "$commit"

echo "building $name:$short with $engine${base:+ from $base}" >&2
"${build[@]}" -f "$context/docker/Dockerfile" --build-arg "REVISION=$commit" \
    -t "$name:$short" -t "$name:$commit" "$context"

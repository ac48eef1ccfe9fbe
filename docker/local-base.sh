#!/usr/bin/env bash
# A base image for docker/Dockerfile built from a Debian mirror alone, for machines that reach
# package mirrors but no container registry: Debian bookworm (its python3 is 3.11, as the project
# requires) with python3, pip and CA certificates, made with mmdebstrap and imported into the engine.
#   docker/local-base.sh [IMAGE]        (default localhost/mlcore-base:bookworm-py311; kept if present)
# Mirror: the host's own bookworm apt sources when it has them, else $DEBIAN_MIRROR and
# $DEBIAN_SECURITY_MIRROR (defaults deb.debian.org). FORCE=1 rebuilds an existing image.
set -euo pipefail

image=${1:-localhost/mlcore-base:bookworm-py311}
engine=${ENGINE:-podman}
suite=bookworm

if [[ -z ${FORCE:-} ]] && $engine image inspect "$image" >/dev/null 2>&1; then
    echo "$image exists (FORCE=1 to rebuild)"
    exit 0
fi

# The same mirrors apt uses on this machine (sources.list or deb822 .sources alike), bookworm suites only.
sources=()
if [[ -z ${DEBIAN_MIRROR:-} ]] && command -v apt-get >/dev/null; then
    while read -r uri release; do
        [[ $release == "$suite" || $release == "$suite"-* ]] && sources+=("deb ${uri%/} $release main")
    done < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' 2>/dev/null | sort -u)
fi
if ((${#sources[@]} == 0)); then
    mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
    sources=("deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main")
fi
printf 'mirror: %s\n' "${sources[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# minbase + what the Dockerfile needs from a python:slim image; no recommends, no docs or locales
# (the path-exclude rules stay in the image, so the Dockerfile's apt installs skip them too).
mmdebstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    "$suite" "$work/rootfs.tar" - < <(printf '%s\n' "${sources[@]}")

$engine import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$work/rootfs.tar" "$image"
$engine run --rm --network none "$image" python3 --version

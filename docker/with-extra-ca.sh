#!/bin/sh
# with-extra-ca COMMAND...: runs COMMAND trusting, besides the system CAs, the PEM bundle given to the
# build as the secret `extra-ca` (a TLS-intercepting corporate proxy's CA). Used by the Dockerfile's
# download steps only: the combined bundle is a temporary file, removed when COMMAND ends, so no
# certificate stays in the image. Without the secret it just runs COMMAND.
set -eu
secret=/run/secrets/extra-ca
if [ -s "$secret" ]; then
    bundle=$(mktemp)
    apt_config=$(mktemp)
    trap 'rm -f "$bundle" "$apt_config"' EXIT
    cat /etc/ssl/certs/ca-certificates.crt "$secret" >"$bundle" 2>/dev/null || cat "$secret" >"$bundle"
    printf 'Acquire::https::CAInfo "%s";\n' "$bundle" >"$apt_config"
    # pip (PIP_CERT), uv and most other clients (SSL_CERT_FILE), requests, apt (https mirrors)
    export PIP_CERT="$bundle" SSL_CERT_FILE="$bundle" REQUESTS_CA_BUNDLE="$bundle" APT_CONFIG="$apt_config"
fi
"$@"

"""The project's DVC remote: by default an S3 bucket on the local SeaweedFS server.

Nothing about where the remote lives, and no credential, is committed: `up` writes the remote into
.dvc/config.local (git-ignored by DVC) and keeps the generated keys there. To use AWS S3 or MinIO
instead, configure the remote yourself (see the README) and `up` leaves it alone.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from mlcore.storage.private import private_file
from mlcore.storage.seaweed import DEFAULT_PORT, Credentials, LocalS3Server, S3ServerError, port_is_open

REMOTE_NAME = "storage"
PRODUCTION_REMOTE = "production"  # a replay on the cluster reads pinned inputs here and writes elsewhere
BUCKET = "mlcore"
REMOTE_URL = f"s3://{BUCKET}/dvcstore"
LOCAL_CONFIG = Path(".dvc") / "config.local"


def _config():
    from dvc.config import Config

    return Config(dvc_dir=".dvc", validate=False)


def local_remote_config() -> dict[str, str]:
    return dict(_config().load_one("local").get("remote", {}).get(REMOTE_NAME, {}))


def write_remote(
    url: str,
    endpoint: str | None,
    credentials: Credentials | None = None,
    name: str = REMOTE_NAME,
    default: bool = True,
) -> None:
    """Write remote `name` (the default one unless `default` is false) into .dvc/config.local, through DVC's
    config API rather than `dvc remote modify`, so secrets never appear on a command line. Without
    credentials, boto reads the AWS_* variables."""
    remote: dict = {"url": url, "verify": True}  # DVC re-hashes downloads: an altered object is refused
    if endpoint:
        remote["endpointurl"] = endpoint
    if credentials:
        remote.update(access_key_id=credentials.access_key, secret_access_key=credentials.secret_key)
    config_file = private_file(LOCAL_CONFIG)  # it holds the keys: 0600 before DVC writes them
    with _config().edit("local") as config:
        if default:
            config["core"]["remote"] = name
        config["remote"][name] = remote
    config_file.chmod(0o600)


def local_server() -> LocalS3Server:
    return LocalS3Server(port=int(os.environ.get("MLCORE_S3_PORT", DEFAULT_PORT)), bucket=BUCKET)


def is_external(config: dict[str, str], server: LocalS3Server) -> bool:
    """True when the user pointed the remote somewhere other than the local server."""
    return bool(config) and config.get("endpointurl") != server.endpoint


def up() -> str:
    """Start the local server (if the remote is local) and point DVC's default remote at it."""
    private_file(LOCAL_CONFIG)  # it holds keys: 0600, even if an older version or a person made it 0644
    server = local_server()
    config = local_remote_config()
    if is_external(config, server):
        return (
            f"remote '{REMOTE_NAME}' points at {config.get('endpointurl', config.get('url'))}; no local server needed"
        )
    credentials = Credentials(
        config.get("access_key_id") or secrets.token_hex(10),
        config.get("secret_access_key") or secrets.token_hex(24),
    )
    server.start(credentials)
    if not config:
        write_remote(REMOTE_URL, server.endpoint, credentials)
    return f"S3 server on {server.endpoint}, bucket '{BUCKET}'; DVC remote '{REMOTE_NAME}' = {REMOTE_URL}"


def down() -> str:
    local_server().stop()
    return "S3 server stopped"


def status() -> str:
    server = local_server()
    if server.pid() is not None and port_is_open(server.port):
        return f"S3 server running on {server.endpoint} (pid {server.pid()})"
    return f"S3 server not running on {server.endpoint}; start it with `make s3-up`"


class RemoteUnusable(RuntimeError):
    """The remote cannot be used; the message names it and says what to do, and holds no secret."""


def check() -> str:
    """Reach the remote and prove the credentials work, before any transfer starts."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    from mlcore.ops.dvc_state import default_remote

    remote = default_remote()
    where = f"remote '{remote.name}' (s3://{remote.bucket}/{remote.prefix} at {remote.endpoint or 'AWS'})"
    try:
        remote.client().list_objects_v2(Bucket=remote.bucket, Prefix=remote.prefix, MaxKeys=1)
    except EndpointConnectionError as exc:
        hint = "start it with `make s3-up`" if remote.endpoint == local_server().endpoint else "check endpointurl"
        raise RemoteUnusable(f"{where} is not reachable: {hint}") from exc
    except NoCredentialsError as exc:
        raise RemoteUnusable(f"{where}: no credentials; set them in .dvc/config.local or AWS_* variables") from exc
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        raise RemoteUnusable(
            f"{where} refused the credentials ({code}); check access_key_id and secret_access_key "
            "in .dvc/config.local or the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables"
        ) from exc
    return f"{where}: reachable, credentials accepted"


def main() -> None:
    commands = {"up": up, "down": down, "status": status, "check": check}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python -m mlcore.ops.remote {{{'|'.join(commands)}}}")
    try:
        print(commands[sys.argv[1]]())
    except (S3ServerError, RemoteUnusable) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()

"""Serve a released model: `make serve REF=model@v1.0.0` (or the workspace's release/ without REF).

With REF: a fresh clone at the tag pulls exactly the release/ output from the DVC remote (hash-verified),
then the server runs with that tag as the model version and the tag's provenance record.

With --feedback (`make serve FEEDBACK=1`): feedback is on and writes into the DVC remote's bucket under
feedback/, with the remote's keys. The token is MLCORE_FEEDBACK_TOKEN if set, else one generated once into
.cache/feedback-token (0600); the command prints where it is, never the token.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from pathlib import Path

from mlcore.ops.dvc_state import default_remote
from mlcore.ops.replay import ReplayError, dvc, fresh_clone
from mlcore.stages.paths import PROVENANCE_PATH, RELEASE_DIR
from mlcore.storage.private import private_file

TOKEN_FILE = Path(".cache/feedback-token")


def feedback_environment(repo: Path) -> dict[str, str]:
    """The server's feedback variables for the repository's default DVC remote (the local S3 server)."""
    remote = default_remote(repo)
    token = os.environ.get("MLCORE_FEEDBACK_TOKEN", "")
    if not token:
        token_file = private_file(repo / TOKEN_FILE)  # 0600 even if it was made by hand
        if not token_file.read_text().strip():
            token_file.write_text(secrets.token_urlsafe(32) + "\n")
        token = token_file.read_text().strip()
        print(f"feedback on: send `Authorization: Bearer $(cat {TOKEN_FILE})`", flush=True)
    return {
        **remote.environment(),
        "MLCORE_FEEDBACK_URL": f"s3://{remote.bucket}/feedback",
        "MLCORE_FEEDBACK_TOKEN": token,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref", nargs="?", help="a release tag, e.g. model@v1.0.0 (default: this workspace)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLCORE_SERVE_PORT", "8080")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--feedback", action="store_true", help="accept feedback into the DVC remote's bucket")
    arguments = parser.parse_args()
    root, version = Path("."), "workspace"
    env = {**os.environ, **(feedback_environment(Path(".")) if arguments.feedback else {})}
    if arguments.ref:
        root = Path(tempfile.mkdtemp(prefix="mlcore-serve-")) / "clone"
        try:
            fresh_clone(Path("."), arguments.ref, root)
            dvc(root, "pull", str(RELEASE_DIR))
        except ReplayError as exc:
            sys.exit(f"error: cannot get the release of {arguments.ref}: {exc}")
        version = arguments.ref
    command = [
        sys.executable,
        "-m",
        "mlcore.serving",
        "--release-dir",
        str(root / RELEASE_DIR),
        "--provenance",
        str(root / PROVENANCE_PATH),
        "--version",
        version,
        "--host",
        arguments.host,
        "--port",
        str(arguments.port),
    ]
    print(f"serving {version} on http://{arguments.host}:{arguments.port}/v2/models/<name>", flush=True)
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main()

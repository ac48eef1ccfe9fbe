"""Serve a released model: `make serve REF=model@v1.0.0` (or the workspace's release/ without REF).

With REF: a fresh clone at the tag pulls exactly the release/ output from the DVC remote (hash-verified),
then the server runs with that tag as the model version and the tag's provenance record.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from mlcore.ops.replay import ReplayError, _dvc, fresh_clone

RELEASE = "release"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref", nargs="?", help="a release tag, e.g. model@v1.0.0 (default: this workspace)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLCORE_SERVE_PORT", "8080")))
    parser.add_argument("--host", default="127.0.0.1")
    arguments = parser.parse_args()
    root, version = Path("."), "workspace"
    if arguments.ref:
        root = Path(tempfile.mkdtemp(prefix="mlcore-serve-")) / "clone"
        try:
            fresh_clone(Path("."), arguments.ref, root)
            _dvc(root, "pull", RELEASE)
        except ReplayError as exc:
            sys.exit(f"error: cannot get the release of {arguments.ref}: {exc}")
        version = arguments.ref
    command = [sys.executable, "-m", "mlcore.serving", "--release-dir", str(root / RELEASE),
               "--provenance", str(root / "models" / "provenance.json"), "--version", version,
               "--host", arguments.host, "--port", str(arguments.port)]  # fmt: skip
    print(f"serving {version} on http://{arguments.host}:{arguments.port}/v2/models/<name>", flush=True)
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()

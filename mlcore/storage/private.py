"""Files that hold secrets (S3 keys, tokens): owner-only from the moment they exist."""

from __future__ import annotations

import os
from pathlib import Path


def private_file(path: Path) -> Path:
    """`path`, created if missing, readable and writable by its owner only (0600) before any secret goes in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    path.chmod(0o600)
    return path

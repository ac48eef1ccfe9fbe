"""Files by their md5, where DVC keeps them: this workspace's DVC cache, else the S3 remote.

Both use DVC 3's content-addressed layout (files/md5/<first two hex digits>/<the rest>). The remote is the one
in MLCORE_S3_BUCKET, MLCORE_S3_PREFIX and MLCORE_S3_ENDPOINT (set in the workflows' pods, and by `make retrain`
from the DVC remote), keys in the AWS_* variables. Every file is checked against its md5.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from mlcore.storage.s3 import S3Prefix

DVC_CACHE = Path(".dvc/cache")


class ContentError(RuntimeError):
    """A file is in neither place, or what was found does not have its md5."""


def _relative(md5: str) -> str:
    return f"files/md5/{md5[:2]}/{md5[2:]}"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_by_md5(md5: str, destination: Path, cache: Path = DVC_CACHE) -> str:
    """Copy the file whose md5 is `md5` to `destination`; returns where it came from."""
    cached = cache / _relative(md5)
    if cached.is_file():
        shutil.copyfile(cached, destination)
        origin = str(cached)
    else:
        bucket = os.environ.get("MLCORE_S3_BUCKET", "")
        if not bucket:
            raise ContentError(
                f"md5 {md5} is not in {cache} and MLCORE_S3_BUCKET is not set to fetch it from the "
                "DVC remote (`make retrain` sets it; in a pod the workflow does)"
            )
        location = S3Prefix(
            bucket,
            os.environ.get("MLCORE_S3_PREFIX", "dvcstore").strip("/"),
            os.environ.get("MLCORE_S3_ENDPOINT") or None,
        )
        from botocore.exceptions import BotoCoreError, ClientError

        origin = f"s3://{bucket}/{location.key(_relative(md5))}"
        try:
            location.client().download_file(bucket, location.key(_relative(md5)), str(destination))
        except (BotoCoreError, ClientError) as exc:
            raise ContentError(f"{origin}: {exc}; push it with `make push` from a workspace that has it") from exc
    if (got := _md5(destination)) != md5:
        destination.unlink()
        raise ContentError(f"{origin} has md5 {got}, not {md5}: the cache or the remote is corrupt (`make verify`)")
    return origin

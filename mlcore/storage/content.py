"""Files by their md5, where DVC keeps them: this workspace's DVC cache, else the S3 remote.

Both use DVC 3's content-addressed layout (files/md5/<first two hex digits>/<the rest>). The remote is the one
in MLCORE_S3_BUCKET, MLCORE_S3_PREFIX and MLCORE_S3_ENDPOINT (set in the workflows' pods, and by `make retrain`
from the DVC remote), keys in the AWS_* variables. Every file is checked against its md5.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mlcore.io import file_hexdigest
from mlcore.storage.s3 import S3Prefix

DVC_CACHE = Path(".dvc/cache")


class ContentError(RuntimeError):
    """A file is in neither place, or what was found does not have its md5."""


def _relative(md5: str) -> str:
    return f"files/md5/{md5[:2]}/{md5[2:]}"


def fetch_by_md5(md5: str, destination: Path, cache: Path = DVC_CACHE) -> str:
    """Copy the file whose md5 is `md5` to `destination`; returns where it came from."""
    cached = cache / _relative(md5)
    if cached.is_file():
        shutil.copyfile(cached, destination)
        origin = str(cached)
    else:
        try:
            location = S3Prefix.from_environment()
        except ValueError as exc:
            raise ContentError(f"md5 {md5} is not in {cache}, and to fetch it from the DVC remote: {exc}") from None
        from botocore.exceptions import BotoCoreError, ClientError

        origin = f"s3://{location.bucket}/{location.key(_relative(md5))}"
        try:
            location.client().download_file(location.bucket, location.key(_relative(md5)), str(destination))
        except (BotoCoreError, ClientError) as exc:
            raise ContentError(f"{origin}: {exc}; push it with `make push` from a workspace that has it") from exc
    if (got := file_hexdigest(destination, "md5")) != md5:
        destination.unlink()
        raise ContentError(f"{origin} has md5 {got}, not {md5}: the cache or the remote is corrupt (`make verify`)")
    return origin

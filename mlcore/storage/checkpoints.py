"""A copy of a training's checkpoint directory in S3, so that a pod that is retried on another node
resumes from the last finished epoch instead of starting over.

Files are uploaded checkpoint first and state file last: a pod killed mid-upload leaves a state file
that still names a complete checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlcore.storage.s3 import S3Prefix


class S3Mirror:
    """The objects under s3://bucket/prefix/ mirror one local directory, file by file."""

    def __init__(self, url: str, endpoint: str | None = None):
        self.location = S3Prefix.parse(url, endpoint, "checkpoint mirror")
        self.url = self.location.url
        self._client = self.location.client()

    @classmethod
    def from_environment(cls, run_id: str) -> S3Mirror | None:
        """MLCORE_CHECKPOINT_URL (+ MLCORE_S3_ENDPOINT, AWS_* keys), one prefix per run; None when unset."""
        base = os.environ.get("MLCORE_CHECKPOINT_URL")
        if not base:
            return None
        return cls(f"{base.rstrip('/')}/{run_id}", os.environ.get("MLCORE_S3_ENDPOINT") or None)

    def names(self) -> list[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=self.location.folder
        )
        return sorted(item["Key"].rsplit("/", 1)[-1] for page in pages for item in page.get("Contents", []))

    def upload(self, path: Path) -> None:
        self._client.upload_file(str(path), self.location.bucket, self.location.key(path.name))

    def download_all(self, directory: Path) -> list[str]:
        names = self.names()
        directory.mkdir(parents=True, exist_ok=True)
        for name in names:
            self._client.download_file(self.location.bucket, self.location.key(name), str(directory / name))
        return names

    def delete(self, names: list[str]) -> None:
        if names:
            objects = [{"Key": self.location.key(name)} for name in names]
            self._client.delete_objects(Bucket=self.location.bucket, Delete={"Objects": objects})

"""A copy of a training's checkpoint directory in S3, so that a pod that is retried on another node
resumes from the last finished epoch instead of starting over.

Files are uploaded checkpoint first and state file last: a pod killed mid-upload leaves a state file
that still names a complete checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path


class S3Mirror:
    """The objects under s3://bucket/prefix/ mirror one local directory, file by file."""

    def __init__(self, url: str, endpoint: str | None = None):
        if not url.startswith("s3://"):
            raise ValueError(f"checkpoint mirror {url!r}: expected s3://bucket/prefix")
        self.bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.prefix = prefix.strip("/")
        self.url = url
        self.endpoint = endpoint

    @classmethod
    def from_environment(cls, run_id: str) -> S3Mirror | None:
        """MLCORE_CHECKPOINT_URL (+ MLCORE_S3_ENDPOINT, AWS_* keys), one prefix per run; None when unset."""
        base = os.environ.get("MLCORE_CHECKPOINT_URL")
        if not base:
            return None
        return cls(f"{base.rstrip('/')}/{run_id}", os.environ.get("MLCORE_S3_ENDPOINT") or None)

    def _client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"))

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def names(self) -> list[str]:
        pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(""))
        return sorted(item["Key"].rsplit("/", 1)[-1] for page in pages for item in page.get("Contents", []))

    def upload(self, path: Path) -> None:
        self._client().upload_file(str(path), self.bucket, self._key(path.name))

    def download_all(self, directory: Path) -> list[str]:
        names = self.names()
        directory.mkdir(parents=True, exist_ok=True)
        client = self._client()
        for name in names:
            client.download_file(self.bucket, self._key(name), str(directory / name))
        return names

    def delete(self, names: list[str]) -> None:
        if names:
            objects = [{"Key": self._key(name)} for name in names]
            self._client().delete_objects(Bucket=self.bucket, Delete={"Objects": objects})

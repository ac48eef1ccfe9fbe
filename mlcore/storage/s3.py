"""An S3 location as the project's tools use it: an s3://bucket/prefix URL, an optional endpoint (SeaweedFS,
MinIO; none for AWS) and keys from the AWS_* environment variables, never from arguments."""

from __future__ import annotations

import os
from dataclasses import dataclass


def s3_client(endpoint: str | None, keys: tuple[str, str] | None = None, config=None):
    """The project's one boto3 S3 client factory. `keys` (access key, secret) where the caller holds them (a local
    server's identities, a DVC remote's config), else the AWS_* variables, read now by a session of its own
    (boto3's default session keeps the first keys it found); `config` a botocore Config where defaults do not fit."""
    import boto3

    access_key, secret_key = keys or (None, None)
    session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key)
    return session.client(
        "s3", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"), config=config
    )


def split_url(url: str, purpose: str = "S3 location") -> tuple[str, str]:
    """(bucket, prefix without slashes at either end) of an s3://bucket/prefix URL; `purpose` names it in the error."""
    if not url.startswith("s3://"):
        raise ValueError(f"{purpose} {url!r}: expected s3://bucket/prefix")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class S3Prefix:
    bucket: str
    prefix: str
    endpoint: str | None = None

    @classmethod
    def parse(cls, url: str, endpoint: str | None = None, purpose: str = "S3 location") -> S3Prefix:
        return cls(*split_url(url, purpose), endpoint)

    @classmethod
    def from_environment(cls) -> S3Prefix:
        """The DVC remote's location as the workflows' pods (and `make retrain`) hand it to a process:
        MLCORE_S3_BUCKET, MLCORE_S3_PREFIX (default dvcstore) and MLCORE_S3_ENDPOINT (empty for AWS)."""
        bucket = os.environ.get("MLCORE_S3_BUCKET", "")
        if not bucket:
            raise ValueError(
                "MLCORE_S3_BUCKET is not set: it names the DVC remote's bucket (`make retrain` sets it from the DVC "
                "remote; in a pod the workflow does)"
            )
        prefix = os.environ.get("MLCORE_S3_PREFIX", "dvcstore").strip("/")
        return cls(bucket, prefix, os.environ.get("MLCORE_S3_ENDPOINT") or None)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def folder(self) -> str:
        """The listing prefix of everything under this location."""
        return f"{self.prefix}/" if self.prefix else ""

    def key(self, *parts: str) -> str:
        return "/".join(part for part in (self.prefix, *parts) if part)

    def client(self, config=None):
        """A client with the AWS_* variables' keys (s3_client)."""
        return s3_client(self.endpoint, config=config)

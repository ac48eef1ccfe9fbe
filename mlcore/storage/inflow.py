"""The inflow bucket: list the samples under the configured prefixes, read one exactly as it was listed, and
keep the listings that pin snapshots (inflow-listings/<sha256>.tsv: content-addressed, so never overwritten).

Where: the bucket and endpoint in MLCORE_S3_BUCKET and MLCORE_S3_ENDPOINT (set in the workflows' pods, and by
`make retrain` from the DVC remote), keys in the AWS_* variables.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mlcore.data.inflow import IMAGES, TRIMAPS, Listed, listing_text, parse_listing, sample_objects
from mlcore.storage.s3 import S3Prefix

LISTINGS = "inflow-listings"


class InflowError(RuntimeError):
    """The bucket cannot be listed or read as pinned; the message says what to do."""


@dataclass(frozen=True)
class InflowBucket:
    location: S3Prefix  # the DVC remote's bucket (the inflow prefixes are not under its prefix)
    prefixes: tuple[str, ...]

    @classmethod
    def from_environment(cls, prefixes: list[str]) -> InflowBucket:
        try:
            return cls(S3Prefix.from_environment(), tuple(prefixes))
        except ValueError as exc:
            raise InflowError(f"the inflow is read from the DVC remote's bucket: {exc}") from None

    def list(self) -> list[Listed]:
        """Every image and trimap under the prefixes, by key."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.location.client()
        found = []
        try:
            for prefix in self.prefixes:
                for folder in (IMAGES, TRIMAPS):
                    pages = client.get_paginator("list_objects_v2").paginate(
                        Bucket=self.location.bucket, Prefix=f"{prefix}/{folder}/"
                    )
                    found += [
                        Listed(o["Key"], o["Size"], o["ETag"].strip('"'), o["LastModified"])
                        for page in pages
                        for o in page.get("Contents", [])
                    ]
        except (BotoCoreError, ClientError) as exc:
            raise InflowError(f"cannot list s3://{self.location.bucket}/{{{','.join(self.prefixes)}}}: {exc}") from exc
        return sample_objects(found)

    def save_listing(self, listing: list[Listed]) -> str:
        """Store the listing under its sha256 (what pins.yaml pins); returns the digest."""
        text = listing_text(listing).encode()
        digest = hashlib.sha256(text).hexdigest()
        self._call("put_object", Key=self._listing_key(digest), Body=text)
        return digest

    def load_listing(self, digest: str) -> list[Listed]:
        """The stored listing of that digest, checked against it."""
        text = self._call("get_object", Key=self._listing_key(digest))["Body"].read()
        if hashlib.sha256(text).hexdigest() != digest:
            raise InflowError(f"s3://{self.location.bucket}/{self._listing_key(digest)} does not have its sha256")
        return parse_listing(text.decode())

    @staticmethod
    def _listing_key(digest: str) -> str:
        return f"{LISTINGS}/{digest}.tsv"

    def _call(self, operation: str, **arguments):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.location.client(), operation)(Bucket=self.location.bucket, **arguments)
        except (BotoCoreError, ClientError) as exc:
            raise InflowError(f"s3://{self.location.bucket}/{arguments['Key']}: {exc}") from exc

    def read(self, item: Listed) -> bytes:
        """The object's bytes, refused if it changed since it was listed (another ETag)."""
        answer = self._call("get_object", Key=item.key)
        if answer["ETag"].strip('"') != item.etag:
            raise InflowError(f"s3://{self.location.bucket}/{item.key} changed since the snapshot was pinned")
        return answer["Body"].read()

"""Feedback: corrected masks sent back by users, stored in S3 in the Oxford-IIIT Pet layout (images/,
annotations/trimaps/) so that a later data version can take them in as new samples.

This is a write path into training data, so it is off unless configured (MLCORE_FEEDBACK_URL) and, when on,
requires a bearer token (MLCORE_FEEDBACK_TOKEN, from a Kubernetes Secret), stores at most
MLCORE_FEEDBACK_PER_HOUR samples per client an hour (default 100) and checks both images' declared sizes
before decoding them. Each sample records when it came and from which client.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import io
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from mlcore.serving.errors import RequestError
from mlcore.serving.images import decode, load, open_image
from mlcore.serving.limits import Limits
from mlcore.serving.protocol import base64_bytes
from mlcore.storage.s3 import S3Prefix

TRIMAP_VALUES = {1, 2, 3}  # pet, background, border
MIN_TOKEN_LENGTH = 16
TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750's bearer token characters
MAX_NOTE_LENGTH = 500
DEFAULT_PER_HOUR = 100


class FeedbackConfigError(ValueError):
    """Feedback is asked for but cannot be served safely; the message names the variable to set."""


class StorageUnavailable(RuntimeError):
    """The feedback store could not be written (down, slow, refusing): the client may retry (503)."""


@dataclass(frozen=True)
class FeedbackConfig:
    url: str
    endpoint: str | None
    token: str = field(repr=False)
    per_hour: int = DEFAULT_PER_HOUR
    write_timeout_s: float = 5.0  # to connect, and to read an answer, per S3 call: a stalled store gets a 503

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> FeedbackConfig | None:
        """None (feedback off) unless MLCORE_FEEDBACK_URL is set; then the token is required."""
        env = os.environ if env is None else env
        url = env.get("MLCORE_FEEDBACK_URL", "")
        if not url:
            return None
        token = env.get("MLCORE_FEEDBACK_TOKEN", "").strip()  # a Secret made --from-file ends with a newline
        if len(token) < MIN_TOKEN_LENGTH or not TOKEN68.fullmatch(token):
            raise FeedbackConfigError(
                f"MLCORE_FEEDBACK_URL is set but MLCORE_FEEDBACK_TOKEN is {'not usable' if token else 'unset'}: "
                f"feedback writes training data, so it needs a token of at least {MIN_TOKEN_LENGTH} characters "
                "(letters, digits, -._~+/ and trailing =; from a Secret); unset MLCORE_FEEDBACK_URL to serve "
                "without feedback"
            )
        per_hour = env.get("MLCORE_FEEDBACK_PER_HOUR", str(DEFAULT_PER_HOUR))
        if not re.fullmatch(r"[0-9]{1,9}", per_hour) or int(per_hour) < 1:
            raise FeedbackConfigError(f"MLCORE_FEEDBACK_PER_HOUR={per_hour[:40]!r}: expected a positive integer")
        try:
            location = S3Prefix.parse(url, purpose="MLCORE_FEEDBACK_URL")
        except ValueError as exc:
            raise FeedbackConfigError(str(exc)) from None
        if not location.bucket:
            raise FeedbackConfigError(f"MLCORE_FEEDBACK_URL={url!r} names no bucket: expected s3://bucket/prefix")
        endpoint = env.get("MLCORE_S3_ENDPOINT") or None
        if endpoint and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", endpoint):
            raise FeedbackConfigError(f"MLCORE_S3_ENDPOINT={endpoint[:80]!r}: expected http(s)://host[:port]")
        return cls(url, endpoint, token, int(per_hour))

    def authorized(self, header: str | None) -> bool:
        """`Authorization: Bearer <token>`; digests compared in constant time (not even the length leaks)."""
        scheme, _, given = (header or "").partition(" ")
        digest = hashlib.sha256(given.strip().encode("utf-8", "replace")).digest()
        return scheme.lower() == "bearer" and hmac.compare_digest(digest, hashlib.sha256(self.token.encode()).digest())


@dataclass(frozen=True)
class Sample:
    id: str
    jpeg: bytes
    png: bytes
    note: str


def parse_sample(body: object, limits: Limits) -> Sample:
    """A feedback body {"image": base64, "mask": base64 PNG trimap, "note": optional} -> the sample to store."""
    if not isinstance(body, dict) or not {"image", "mask"} <= body.keys():
        raise RequestError(
            'feedback needs a JSON object with "image" (base64 JPEG/PNG) and "mask" (base64 PNG trimap 1/2/3)'
        )
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH:
        raise RequestError(f'feedback: "note" must be a string of at most {MAX_NOTE_LENGTH} characters')
    image_bytes, mask_bytes = (base64_bytes(body[key], f"feedback {key}") for key in ("image", "mask"))
    image = open_image(image_bytes, "feedback image", limits)
    mask = open_image(mask_bytes, "feedback mask", limits, formats=("PNG",))
    if mask.size != image.size or mask.mode not in ("L", "P"):
        raise RequestError(
            f"feedback mask: a single-channel 8-bit {image.size[0]}x{image.size[1]} trimap is "
            f"required, got {mask.mode} {mask.size[0]}x{mask.size[1]}"
        )
    pixels, trimap = decode(image, "feedback image"), np.asarray(load(mask, "feedback mask"))
    stray = sorted(set(np.unique(trimap).tolist()) - TRIMAP_VALUES)
    if stray:
        raise RequestError(f"feedback mask: values must be 1 (pet), 2 (background), 3 (border); found {stray[:5]}")
    digest = hashlib.sha256(hashlib.sha256(image_bytes).digest() + hashlib.sha256(mask_bytes).digest())
    jpeg, png = io.BytesIO(), io.BytesIO()
    pixels.save(jpeg, format="JPEG", quality=95)
    Image.fromarray(trimap.astype(np.uint8)).save(png, format="PNG")
    return Sample(f"feedback_{digest.hexdigest()[:16]}", jpeg.getvalue(), png.getvalue(), note)


class FeedbackStore:
    def __init__(self, config: FeedbackConfig):
        from botocore.config import Config

        self.location = S3Prefix.parse(config.url, config.endpoint, "feedback store")
        seconds = config.write_timeout_s
        once = Config(connect_timeout=seconds, read_timeout=seconds, retries={"total_max_attempts": 1})
        self.client = self.location.client(once)
        self.longest_write_s = 3 * 2 * seconds  # three objects, each connecting and reading at its limit

    def put(self, sample: Sample, metadata: dict) -> None:
        """Content-addressed (a resend overwrites itself); the image goes last, so a listing of images/ never
        shows a sample whose trimap is missing (a failed write may leave a trimap and metadata without their
        image: the Oxford layout lists samples by image, so they are ignored)."""
        from botocore.exceptions import BotoCoreError, ClientError

        received = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        documents = {
            ("annotations", "trimaps", f"{sample.id}.png"): sample.png,
            ("metadata", f"{sample.id}.json"): json.dumps(
                {**metadata, "note": sample.note, "received": received}, sort_keys=True
            ).encode(),
            ("images", f"{sample.id}.jpg"): sample.jpeg,
        }
        try:
            for parts, body in documents.items():
                self.client.put_object(Bucket=self.location.bucket, Key=self.location.key(*parts), Body=body)
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"feedback store {self.location.url}: {exc.__class__.__name__}") from exc

"""Feedback: corrected masks sent back by users, stored in S3 in the Oxford-IIIT Pet layout (images/,
annotations/trimaps/) so that a later data version can take them in as new samples.

This is a write path into training data, so it is off unless configured (MLCORE_FEEDBACK_URL) and, when on,
requires a bearer token (MLCORE_FEEDBACK_TOKEN, from a Kubernetes Secret), limits each client address to
MLCORE_FEEDBACK_PER_HOUR samples (default 100) and checks both images' declared sizes before decoding them.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from mlcore.serving.errors import BadInput
from mlcore.serving.images import decode, open_image
from mlcore.serving.limits import Limits
from mlcore.serving.protocol import base64_bytes
from mlcore.storage.s3 import S3Prefix

TRIMAP_VALUES = {1, 2, 3}  # pet, background, border
MIN_TOKEN_LENGTH = 16
MAX_NOTE_LENGTH = 500
DEFAULT_PER_HOUR = 100


class FeedbackConfigError(ValueError):
    """Feedback is asked for but cannot be served safely; the message names the variable to set."""


@dataclass(frozen=True)
class FeedbackConfig:
    url: str
    endpoint: str | None
    token: str = field(repr=False)
    per_hour: int = DEFAULT_PER_HOUR

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> FeedbackConfig | None:
        """None (feedback off) unless MLCORE_FEEDBACK_URL is set; then the token is required."""
        env = os.environ if env is None else env
        url = env.get("MLCORE_FEEDBACK_URL", "")
        if not url:
            return None
        token = env.get("MLCORE_FEEDBACK_TOKEN", "")
        if len(token) < MIN_TOKEN_LENGTH:
            raise FeedbackConfigError(
                f"MLCORE_FEEDBACK_URL is set but MLCORE_FEEDBACK_TOKEN is {'short' if token else 'unset'}: feedback "
                f"writes training data, so it needs a token of at least {MIN_TOKEN_LENGTH} characters (from a "
                "Secret); unset MLCORE_FEEDBACK_URL to serve without feedback"
            )
        per_hour = env.get("MLCORE_FEEDBACK_PER_HOUR", str(DEFAULT_PER_HOUR))
        if not per_hour.isdigit() or int(per_hour) < 1:
            raise FeedbackConfigError(f"MLCORE_FEEDBACK_PER_HOUR={per_hour!r}: expected a positive integer")
        S3Prefix.parse(url, purpose="MLCORE_FEEDBACK_URL")
        return cls(url, env.get("MLCORE_S3_ENDPOINT") or None, token, int(per_hour))

    def authorized(self, header: str | None) -> bool:
        """`Authorization: Bearer <token>`, compared in constant time."""
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())


@dataclass(frozen=True)
class Sample:
    id: str
    jpeg: bytes
    png: bytes


def parse_sample(body: dict, limits: Limits) -> tuple[Sample, str]:
    """A feedback body {"image": base64, "mask": base64 PNG trimap, "note": optional} -> the sample to store."""
    if not isinstance(body, dict) or not {"image", "mask"} <= body.keys():
        raise BadInput(
            'feedback needs a JSON object with "image" (base64 JPEG/PNG) and "mask" (base64 PNG trimap 1/2/3)'
        )
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH:
        raise BadInput(f'feedback: "note" must be a string of at most {MAX_NOTE_LENGTH} characters')
    image_bytes, mask_bytes = (base64_bytes(body[key], f"feedback {key}") for key in ("image", "mask"))
    image = open_image(image_bytes, "feedback image", limits)
    mask = open_image(mask_bytes, "feedback mask", limits, formats=("PNG",))
    if mask.size != image.size or mask.mode not in ("L", "P"):
        raise BadInput(f"feedback mask: a single-channel 8-bit {image.size[0]}x{image.size[1]} trimap is required, "
                       f"got {mask.mode} {mask.size[0]}x{mask.size[1]}")  # fmt: skip
    pixels, trimap = decode(image, "feedback image"), np.asarray(_load(mask))
    stray = sorted(set(np.unique(trimap).tolist()) - TRIMAP_VALUES)
    if stray:
        raise BadInput(f"feedback mask: values must be 1 (pet), 2 (background), 3 (border); found {stray[:5]}")
    digest = hashlib.sha256(hashlib.sha256(image_bytes).digest() + hashlib.sha256(mask_bytes).digest())
    jpeg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(pixels).save(jpeg, format="JPEG", quality=95)
    Image.fromarray(trimap.astype(np.uint8)).save(png, format="PNG")
    return Sample(f"feedback_{digest.hexdigest()[:16]}", jpeg.getvalue(), png.getvalue()), note


def _load(mask: Image.Image) -> Image.Image:
    try:
        mask.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"feedback mask: not a readable PNG ({exc})", 415) from None
    return mask


class FeedbackStore:
    def __init__(self, config: FeedbackConfig):
        self.location = S3Prefix.parse(config.url, config.endpoint, "feedback store")
        self.client = self.location.client()

    def put(self, sample: Sample, metadata: dict) -> None:
        """Content-addressed: a resend overwrites itself."""
        documents = {
            ("images", f"{sample.id}.jpg"): sample.jpeg,
            ("annotations", "trimaps", f"{sample.id}.png"): sample.png,
            ("metadata", f"{sample.id}.json"): json.dumps(metadata, sort_keys=True).encode(),
        }
        for parts, body in documents.items():
            self.client.put_object(Bucket=self.location.bucket, Key=self.location.key(*parts), Body=body)

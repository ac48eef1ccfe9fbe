"""Corrected masks sent back by users, stored in S3 in the Oxford-IIIT Pet layout (images/, annotations/trimaps/)
so the next data version can take them in as new samples."""

from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np
from PIL import Image

from mlcore.serving.model import BadInput, Limits, decode_image
from mlcore.storage.s3 import S3Prefix

TRIMAP_VALUES = {1, 2, 3}  # pet, background, border


class FeedbackStore:
    def __init__(self, url: str, endpoint: str | None = None):
        self.location = S3Prefix.parse(url, endpoint, "feedback store")
        self.client = self.location.client()

    @classmethod
    def from_environment(cls) -> FeedbackStore | None:
        url = os.environ.get("MLCORE_FEEDBACK_URL")
        return cls(url, os.environ.get("MLCORE_S3_ENDPOINT") or None) if url else None

    def store(self, image_bytes: bytes, mask_bytes: bytes, metadata: dict, limits: Limits) -> str:
        """Validate and store one sample; returns its id (content-addressed: a resend overwrites itself)."""
        image = decode_image(image_bytes, 0, limits)
        try:
            trimap = np.asarray(Image.open(io.BytesIO(mask_bytes)))
        except Exception as exc:  # Pillow raises several types for undecodable data
            raise BadInput(f"mask: not a readable PNG ({exc})") from None
        if trimap.shape[:2] != image.shape[:2] or trimap.ndim != 2:
            raise BadInput(f"mask: a single-channel {image.shape[1]}x{image.shape[0]} trimap is required, "
                           f"got shape {list(trimap.shape)}")  # fmt: skip
        stray = sorted(set(np.unique(trimap).tolist()) - TRIMAP_VALUES)
        if stray:
            raise BadInput(f"mask: values must be 1 (pet), 2 (background), 3 (border); found {stray[:5]}")
        sample = "feedback_" + hashlib.sha256(image_bytes + mask_bytes).hexdigest()[:16]
        jpeg = io.BytesIO()
        Image.fromarray(image).save(jpeg, format="JPEG", quality=95)
        png = io.BytesIO()
        Image.fromarray(trimap.astype(np.uint8)).save(png, format="PNG")
        documents = {
            ("images", f"{sample}.jpg"): jpeg.getvalue(),
            ("annotations", "trimaps", f"{sample}.png"): png.getvalue(),
            ("metadata", f"{sample}.json"): json.dumps(metadata, sort_keys=True).encode(),
        }
        for parts, body in documents.items():
            self.client.put_object(Bucket=self.location.bucket, Key=self.location.key(*parts), Body=body)
        return sample

"""Decode and check one (image, trimap) pair; convert what can be converted, reject the rest.

Each sample gets a named outcome, so the report says exactly what happened to every odd file of
the real data set (CMYK or grayscale JPEGs, PNG data behind a .jpg name, RGBA, corrupt files,
trimaps of the wrong size or with stray values, images without a trimap).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlcore.data.oxford import TRIMAP_VALUES

CONVERTIBLE_MODES = {
    "CMYK": "cmyk",
    "L": "grayscale",
    "RGBA": "rgba",
    "P": "palette",
    "LA": "grayscale_alpha",
    "I;16": "grayscale_16bit",
}


@dataclass
class Checked:
    """A usable sample, or the reason it was quarantined."""

    sample_id: str
    image: Image.Image | None = None
    trimap: Image.Image | None = None
    conversions: list[str] = field(default_factory=list)
    rejection: str | None = None


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # force a full decode so truncated files fail here, not later
    return image


def _reason(exc: Exception) -> str:
    """Why a file does not decode, the same on every run: Pillow's message for an unidentifiable file embeds
    the repr of the in-memory buffer, memory address included."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format Pillow can identify"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(exc))


def check_sample(sample_id: str, image_bytes: bytes, trimap_bytes: bytes | None) -> Checked:
    result = Checked(sample_id)
    try:
        image = _decode(image_bytes)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        result.rejection = f"corrupt_image: {_reason(exc)}"
        return result
    if image.format != "JPEG":
        result.conversions.append(f"{image.format.lower()}_data_in_jpg")
    if image.mode != "RGB":
        result.conversions.append(CONVERTIBLE_MODES.get(image.mode, f"mode_{image.mode}"))
        image = image.convert("RGB")
    if trimap_bytes is None:
        result.rejection = "missing_trimap"
        return result
    try:
        trimap = _decode(trimap_bytes)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        result.rejection = f"corrupt_trimap: {_reason(exc)}"
        return result
    if trimap.size != image.size:
        result.rejection = f"trimap_size_mismatch: image {image.size}, trimap {trimap.size}"
        return result
    values = np.unique(np.asarray(trimap))
    stray = sorted(set(values.tolist()) - set(TRIMAP_VALUES))
    if trimap.mode not in ("L", "P") or stray:
        result.rejection = f"invalid_trimap_values: mode {trimap.mode}, unexpected values {stray[:5]}"
        return result
    result.image, result.trimap = image, trimap
    return result

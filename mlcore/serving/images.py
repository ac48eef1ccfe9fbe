"""Encoded images in, model-sized arrays out, and the model's output back at each image's own size.

Decoding follows the prepare stage (RGB conversion, Pillow's bilinear resize), so the server sees what the
model was trained and evaluated on. Only JPEG and PNG are opened: the formats the data set has and the
README documents; Pillow would otherwise also parse GIF, TIFF, BMP and a dozen more.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlcore.data.transform import resize_image
from mlcore.serving.errors import BadInput
from mlcore.serving.limits import Limits

FORMATS = ("JPEG", "PNG")


def open_image(data: bytes, where: str, limits: Limits, formats: tuple[str, ...] = FORMATS) -> Image.Image:
    """Read the header only and check the declared size: nothing is decoded yet."""
    if not data:
        raise BadInput(f"{where}: empty")
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:
        raise BadInput(f"{where}: too large ({exc})", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"{where}: not a readable {' or '.join(formats)} image ({exc})", 415) from None
    limits.check_image(*image.size, where)
    return image


def decode(image: Image.Image, where: str) -> np.ndarray:
    """An opened image -> uint8 RGB [H, W, 3], the way prepare converts (CMYK, grayscale, RGBA -> RGB)."""
    try:
        image.load()  # a truncated upload fails here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadInput(f"{where}: not a readable {image.format} image ({exc})", 415) from None
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def to_model_size(images: list[np.ndarray] | np.ndarray, size: int) -> np.ndarray:
    """[N, size, size, 3] uint8: images already at the model's size pass through untouched."""
    return np.stack([
        image if image.shape[:2] == (size, size) else resize_image(Image.fromarray(image), size) for image in images
    ])  # fmt: skip


def at_size(probabilities: np.ndarray, height: int, width: int) -> np.ndarray:
    """Model-sized probabilities [N, S, S, C] -> [N, height, width, C], bilinear (half-pixel centres)."""
    if probabilities.shape[1:3] == (height, width):
        return probabilities
    import tensorflow as tf

    return tf.image.resize(probabilities, (height, width), method="bilinear").numpy()


def mask_of(probabilities: np.ndarray) -> np.ndarray:
    """argmax over the classes as uint8 (ties to the lower label, as argmax), without numpy's int64 index
    array: half the time of `argmax(axis=-1)` over a last axis of 3, and an eighth of its memory."""
    mask = np.zeros(probabilities.shape[:-1], np.uint8)
    best = probabilities[..., 0]
    for label in range(1, probabilities.shape[-1]):
        candidate = probabilities[..., label]
        np.copyto(mask, label, where=candidate > best)
        best = np.maximum(best, candidate)
    return mask

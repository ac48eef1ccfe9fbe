"""Resize an (image, trimap) pair to the model's input size without ever interpolating labels."""

from __future__ import annotations

import numpy as np
from PIL import Image


def trimap_to_classes(trimap: np.ndarray) -> np.ndarray:
    """Trimap values 1 pet, 2 background, 3 border become class indices 0, 1, 2."""
    return (trimap - 1).astype(np.uint8)


def resize_image(image: Image.Image, size: int) -> np.ndarray:
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def resize_pair(image: Image.Image, trimap: Image.Image, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear for pixels; nearest neighbour for labels, so every output label is a real label.

    (The seed project resized trimaps bilinearly and lost label pixels at every class boundary.)
    """
    labels = np.asarray(trimap.resize((size, size), Image.Resampling.NEAREST))
    return resize_image(image, size), trimap_to_classes(labels)

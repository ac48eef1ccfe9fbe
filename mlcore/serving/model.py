"""A released model as the server holds it: the SavedModel (calibration folded in), its release record and
provenance, and the same image handling as the prepare stage (RGB conversion, bilinear resize)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlcore.data.transform import resize_image


class BadInput(ValueError):
    """A request the model cannot take; the message says which input and why (HTTP 4xx)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 4096 * 4096  # per image: a decompression bomb or a mistake, not a photo
    max_batch: int = 64
    min_side: int = 8


def decode_image(data: bytes, index: int, limits: Limits) -> np.ndarray:
    """Encoded JPEG/PNG bytes -> uint8 RGB array, the way prepare converts (CMYK, grayscale, RGBA -> RGB)."""
    if not data:
        raise BadInput(f"image {index}: empty")
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        image = Image.open(io.BytesIO(data))
        check_size(image.size[1], image.size[0], index, limits)
        image.load()  # a truncated upload fails here
    except Image.DecompressionBombError as exc:
        raise BadInput(f"image {index}: too large ({exc})", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise BadInput(f"image {index}: not a readable JPEG or PNG ({exc})", 415) from None
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def check_size(height: int, width: int, index: int, limits: Limits) -> None:
    if height * width > limits.max_pixels:
        raise BadInput(f"image {index}: {width}x{height} exceeds the limit of {limits.max_pixels} pixels", 413)
    if min(height, width) < limits.min_side:
        raise BadInput(f"image {index}: {width}x{height} is smaller than {limits.min_side} pixels on a side")


class ReleasedModel:
    def __init__(self, release_dir: Path, provenance_path: Path | None = None, version: str = "unversioned"):
        import tensorflow as tf

        self.directory = Path(release_dir)
        self.release = json.loads((self.directory / "release.json").read_text())
        provenance = Path(provenance_path) if provenance_path else None
        self.provenance = json.loads(provenance.read_text()) if provenance and provenance.exists() else None
        self.commit = (self.provenance or {}).get("source", {}).get("commit")
        self.name = self.release["model_name"]
        self.version = version
        self.image_size = int(self.release["image_size"])
        self.class_names = list(self.release["class_names"])
        self._serve = tf.saved_model.load(str(self.directory / "saved_model")).signatures["serve"]

    def metadata(self) -> dict:
        """The V2 model metadata, with the version and provenance tags the seed's deployment carried."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "tensorflow_savedmodel",
            "inputs": [
                {"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]},
                {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]},
            ],
            "outputs": [
                {"name": "mask", "datatype": "UINT8", "shape": [-1, -1, -1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, -1, -1, len(self.class_names)]},
            ],
            "parameters": {
                "version": self.version,
                "git_commit": self.commit,
                "model_sha256": self.release["model_sha256"],
                "calibrator_sha256": self.release["calibrator_sha256"],
                "calibration": self.release["calibrator"]["method"],
                "class_names": self.class_names,
                "image_size": self.image_size,
            },
        }

    def predict(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(mask uint8 [H, W], calibrated probabilities float32 [H, W, C]) per image, at each input's size."""
        import tensorflow as tf

        size = self.image_size
        batch = np.stack([
            image if image.shape[:2] == (size, size) else resize_image(Image.fromarray(image), size) for image in images
        ])  # fmt: skip
        probabilities = self._serve(images=tf.constant(batch))["probabilities"]
        results = []
        for image, probability in zip(images, probabilities, strict=True):
            height, width = image.shape[:2]
            if (height, width) != (size, size):
                probability = tf.image.resize(probability, (height, width), method="bilinear")
            probability = np.asarray(probability, np.float32)
            results.append((probability.argmax(axis=-1).astype(np.uint8), probability))
        return results

"""Run a model over a prepared split in fixed-order batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mlcore.data.tfrecords import load_split_arrays


@dataclass(frozen=True)
class SplitPredictions:
    ids: list[str]
    images: np.ndarray  # float32 [N, H, W, 3], 0..255
    labels: np.ndarray  # int32 [N, H, W]
    probabilities: np.ndarray  # float32 [N, H, W, C]


def predict_images(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Per-pixel probabilities; equal images in equal batches give equal bits."""
    probabilities = model.predict(tf.data.Dataset.from_tensor_slices(images).batch(batch_size), verbose=0)
    return np.asarray(probabilities, np.float32)


def predict_split(model: keras.Model, prepared_dir: Path, split: str, batch_size: int = 16) -> SplitPredictions:
    ids, images, labels = load_split_arrays(prepared_dir, split)
    return SplitPredictions(ids, images, labels, predict_images(model, images, batch_size))

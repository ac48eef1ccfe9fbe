"""Training losses: pixel cross-entropy, optionally plus soft Dice (robust to the small border class)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mlcore")
def soft_dice_loss(labels, probabilities):
    """1 - mean over classes of the soft Dice coefficient, per batch."""
    one_hot = ops.one_hot(ops.cast(labels, "int32"), ops.shape(probabilities)[-1])
    axes = (0, 1, 2)
    intersection = ops.sum(one_hot * probabilities, axis=axes)
    total = ops.sum(one_hot, axis=axes) + ops.sum(probabilities, axis=axes)
    return 1.0 - ops.mean((2.0 * intersection + 1.0) / (total + 1.0))


@keras.saving.register_keras_serializable(package="mlcore")
def cross_entropy_plus_dice(labels, probabilities):
    cross_entropy = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
    return cross_entropy + soft_dice_loss(labels, probabilities)


def make_loss(name: str):
    return {
        "cross_entropy": keras.losses.SparseCategoricalCrossentropy(),
        "cross_entropy+dice": cross_entropy_plus_dice,
    }[name]

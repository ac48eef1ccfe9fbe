"""Fingerprint the numerics of one training step on this machine: one hash per operation, at the shapes
training uses, so records from two machines name the operations whose bits differ.

For each kind of layer in the configured U-Net (three instances of each: first, middle, last) the forward
output and the backward gradients (input and weights) of fixed inputs are hashed, at every batch size a
training can see (the search's and train's batch sizes, and PARTIAL_BATCHES, the default data's last partial
batches); then the whole model's forward pass, loss, gradients and one Adam step. Everything is seeded:
on one machine, with op determinism, the record never changes.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from mlcore.params import Params

PARTIAL_BATCHES = (4, 20)  # 340 training samples of the default data at batch 16 (and 8) and 32


def _digest(value) -> str:
    array = np.ascontiguousarray(np.asarray(value))
    return hashlib.sha256(str(array.dtype).encode() + str(array.shape).encode() + array.tobytes()).hexdigest()[:16]


def batch_sizes(params: Params) -> list[int]:
    return sorted({*params.tune.space.batch_size, params.train.batch_size, *PARTIAL_BATCHES})


def _sampled_layers(model) -> list:
    """First, middle and last instance of every layer class that computes something."""
    from mlcore.model.unet import all_layers

    by_class = defaultdict(list)
    for layer in all_layers(model):
        if layer.__class__.__name__ != "InputLayer" and not hasattr(layer, "layers"):
            by_class[layer.__class__.__name__].append(layer)
    return [layers[i] for layers in by_class.values() for i in sorted({0, len(layers) // 2, len(layers) - 1})]


def _fixed(rng: np.random.Generator, shape: tuple, batch: int):
    return rng.standard_normal((batch, *shape[1:])).astype("float32")


def _layer_hashes(layer, batch: int, rng: np.random.Generator) -> dict[str, str]:
    import tensorflow as tf

    symbolic = layer.input if isinstance(layer.input, list) else [layer.input]
    inputs = [tf.constant(_fixed(rng, tuple(t.shape), batch)) for t in symbolic]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        output = layer(inputs if isinstance(layer.input, list) else inputs[0], training=True)
        cotangent = tf.constant(_fixed(rng, tuple(output.shape), batch))
        reduced = tf.reduce_sum(output * cotangent)
    gradients = tape.gradient(reduced, [*inputs, *layer.trainable_weights])
    hashes = {"forward": _digest(output)}
    for index, gradient in enumerate(gradients):
        if gradient is not None:
            hashes[f"backward.{index}"] = _digest(gradient)
    return hashes


def _model_hashes(model, loss_name: str, learning_rate: float, batch: int, rng: np.random.Generator) -> dict:
    import keras
    import tensorflow as tf

    from mlcore.model.losses import make_loss

    size = model.input_shape[1]
    images = tf.constant(rng.integers(0, 256, (batch, size, size, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, 3, (batch, size, size)).astype("int32"))
    loss_fn = make_loss(loss_name)
    with tf.GradientTape() as tape:
        probabilities = model(images, training=True)
        loss = loss_fn(labels, probabilities)
    gradients = tape.gradient(loss, model.trainable_weights)
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.apply_gradients(zip(gradients, model.trainable_weights, strict=True))
    return {
        "forward": _digest(probabilities),
        "loss": _digest(loss),
        "gradients": _digest(np.concatenate([np.ravel(g) for g in gradients])),
        "adam_step": _digest(np.concatenate([np.ravel(w) for w in model.trainable_weights])),
    }


def probe(params: Params) -> dict[str, str]:
    """Operation -> hash, e.g. "b16/block_3_depthwise/backward.1". Call after mlcore.runtime.pin_runtime."""
    from mlcore.model.unet import build_unet

    m = params.model
    hashes: dict[str, str] = {}
    for batch in batch_sizes(params):
        rng = np.random.default_rng([params.seed, batch])
        model = build_unet(
            params.prepare.image_size,
            m.encoder,
            "none",
            m.encoder_trainable,
            m.mobilenet_alpha,
            tuple(m.decoder_filters),
            m.dropout,
            m.batchnorm_momentum,
        )
        for layer in _sampled_layers(model):
            for op, value in _layer_hashes(layer, batch, rng).items():
                hashes[f"b{batch}/{layer.name}/{op}"] = value
        for op, value in _model_hashes(model, params.train.loss, params.train.learning_rate, batch, rng).items():
            hashes[f"b{batch}/model/{op}"] = value
    return dict(sorted(hashes.items()))

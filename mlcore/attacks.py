"""L-infinity adversarial examples against the segmenter: FGSM and PGD, written with tf.GradientTape.

Pixels are in [0, 255], so a budget epsilon in grey levels is epsilon/255 of the range. Both attacks raise the
pixel cross-entropy against the true labels of the model's logits divided by a temperature: 1 attacks the raw
model, the calibrator's temperature the calibrated one (softmax(logits / T) is what temperature calibration
computes). Logits, not the softmax output: in float32 a confident pixel's probability is exactly 1, and its
gradient through the softmax exactly 0, which would hide it from the attack.

Why not a toolkit: the field's libraries (Adversarial Robustness Toolbox, Foolbox, CleverHans) model
classifiers, one label per input; a per-pixel segmentation loss needs an estimator of one's own, and this
module is what such an estimator would hold. Written with GradientTape, FGSM also runs inside the training
step (adversarial training), and PGD's random start is a stateless, seeded draw.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from mlcore.params import PgdParams

PIXEL_MAX = 255.0
LOGITS_LAYER = "logits"  # mlcore.model.unet: the layer before the softmax


def logits_model(model: keras.Model) -> keras.Model:
    """The same network, weights shared, ending before its softmax."""
    return keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output)


def attack_loss(logits: keras.Model, images: tf.Tensor, labels: tf.Tensor, temperature: float) -> tf.Tensor:
    """Summed over pixels and images: in inference mode each image's gradient depends on that image alone."""
    tempered = logits(images, training=False) / temperature
    return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tempered))


def gradient_sign(logits: keras.Model, images: tf.Tensor, labels: tf.Tensor, temperature: float) -> tf.Tensor:
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = attack_loss(logits, images, labels, temperature)
    return tf.sign(tape.gradient(loss, images))


def fgsm(
    logits: keras.Model, images: tf.Tensor, labels: tf.Tensor, epsilon: float, temperature: float = 1.0
) -> tf.Tensor:
    """One step of size epsilon along the sign of the loss gradient (Goodfellow et al., 2015); with integer
    pixels and an integer epsilon the result is integer, as an 8-bit image must be."""
    return tf.clip_by_value(images + epsilon * gradient_sign(logits, images, labels, temperature), 0.0, PIXEL_MAX)


def pgd(
    logits: keras.Model,
    images: tf.Tensor,
    labels: tf.Tensor,
    epsilon: float,
    steps: int,
    step_size: float,
    seed: tf.Tensor,
    random_start: bool = True,
    temperature: float = 1.0,
) -> tf.Tensor:
    """`steps` signed-gradient steps of step_size * epsilon, each projected back into the epsilon-ball within the
    pixel range (Madry et al., 2018), from a uniform start in that box drawn statelessly from `seed` ([2] int).
    The result is rounded to whole grey levels: for 8-bit images (whole grey levels, as prepared) and a whole
    epsilon, an image the server can be sent, still inside the ball."""
    low, high = tf.maximum(images - epsilon, 0.0), tf.minimum(images + epsilon, PIXEL_MAX)
    adversarial = images
    if random_start:
        noise = tf.random.stateless_uniform(tf.shape(images), seed, -epsilon, epsilon, dtype=images.dtype)
        adversarial = tf.clip_by_value(images + noise, low, high)
    for _ in tf.range(steps):
        step = step_size * epsilon * gradient_sign(logits, adversarial, labels, temperature)
        adversarial = tf.clip_by_value(adversarial + step, low, high)
    return tf.round(adversarial)


def attack_function(model: keras.Model, attack: str, pgd_params: PgdParams, seed: int, temperature: float) -> Callable:
    """A traced (images, labels, epsilon, batch_index) -> perturbed images."""
    logits = logits_model(model)

    @tf.function(jit_compile=False, reduce_retracing=True)
    def perturb(images, labels, epsilon, batch_index):
        if attack == "fgsm":
            return fgsm(logits, images, labels, epsilon, temperature)
        batch_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(batch_index, tf.int64)])
        steps, step_size, random_start = pgd_params.steps, pgd_params.step_size, pgd_params.random_start
        return pgd(logits, images, labels, epsilon, steps, step_size, batch_seed, random_start, temperature)

    return perturb


def perturb_split(
    perturb: Callable, images: np.ndarray, labels: np.ndarray, epsilon: int, batch_size: int
) -> np.ndarray:
    """The whole split perturbed, in order; the random start of batch b depends on (seed, b) alone."""
    perturbed = [
        perturb(
            images[start : start + batch_size],
            labels[start : start + batch_size],
            tf.constant(epsilon, tf.float32),  # tensors, not Python numbers: one trace serves every budget and batch
            tf.constant(index, tf.int64),
        ).numpy()
        for index, start in enumerate(range(0, len(images), batch_size))
    ]
    return np.concatenate(perturbed).astype(np.float32)

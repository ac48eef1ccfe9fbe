"""U-Net with a MobileNetV2 or VGG19 encoder and a transposed-convolution decoder (the seed's design).

The model takes RGB pixels in [0, 255] at any batch size and returns per-pixel softmax probabilities
over (pet, background, border). Encoder-specific input scaling lives inside the model, so every
caller (training, evaluation, the server) feeds raw pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
from keras import layers

from mlcore.data.oxford import CLASS_NAMES
from mlcore.params import ModelParams

NUM_CLASSES = len(CLASS_NAMES)
# Skip connections from fine to coarse; the last is the bottleneck. Both give strides 2, 4, 8, 16, 32.
SKIP_LAYERS = {
    "mobilenet_v2": (
        "block_1_expand_relu",
        "block_3_expand_relu",
        "block_6_expand_relu",
        "block_13_expand_relu",
        "block_16_project",
    ),
    "vgg19": ("block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool"),
}


class EncoderWeightsUnavailable(RuntimeError):
    """Pretrained encoder weights could not be loaded; the message says how to provide them."""


@keras.saving.register_keras_serializable(package="mlcore")
class EncoderPreprocessing(layers.Layer):
    """Maps [0, 255] RGB to what the encoder's ImageNet weights expect."""

    def __init__(self, encoder: str, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder

    def call(self, images):
        if self.encoder == "mobilenet_v2":
            return images / 127.5 - 1.0
        bgr = images[..., ::-1]  # VGG19: caffe convention, BGR minus the ImageNet mean
        return bgr - keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=images.dtype)

    def get_config(self):
        return {**super().get_config(), "encoder": self.encoder}


def _encoder_backbone(encoder: str, image_size: int, weights: str, alpha: float) -> keras.Model:
    shape = (image_size, image_size, 3)
    keras_weights = "imagenet" if weights == "imagenet" else None
    try:
        if encoder == "mobilenet_v2":
            base = keras.applications.MobileNetV2(
                input_shape=shape, include_top=False, weights=keras_weights, alpha=alpha
            )
        else:
            base = keras.applications.VGG19(input_shape=shape, include_top=False, weights=keras_weights)
    except Exception as exc:  # keras raises bare Exception on a failed fetch
        raise EncoderWeightsUnavailable(
            f"model.encoder_weights=imagenet: ImageNet weights for {encoder} could not be loaded ({exc}). "
            "Place the Keras weights file in ~/.keras/models/, or set model.encoder_weights to the path "
            "of a .weights.h5 file tracked with DVC, or use 'none' to train from scratch."
        ) from exc
    if weights not in ("none", "imagenet"):
        path = Path(weights)
        if not path.is_file():
            raise EncoderWeightsUnavailable(
                f"model.encoder_weights={weights!r}: no such file. Give a .weights.h5 path, 'imagenet' or 'none'."
            )
        base.load_weights(path)
    skips = [base.get_layer(name).output for name in SKIP_LAYERS[encoder]]
    return keras.Model(base.input, skips, name=f"{encoder}_encoder")


def _upsample(x, filters: int, dropout: float, name: str):
    x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", use_bias=False, name=f"{name}_deconv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_unet(
    image_size: int,
    encoder: str = "mobilenet_v2",
    encoder_weights: str = "none",
    encoder_trainable: bool = True,
    mobilenet_alpha: float = 0.35,
    decoder_filters: tuple[int, ...] = (64, 32, 24, 16),
    dropout: float = 0.0,
    batchnorm_momentum: float = 0.9,
) -> keras.Model:
    inputs = keras.Input((image_size, image_size, 3), name="image")
    backbone = _encoder_backbone(encoder, image_size, encoder_weights, mobilenet_alpha)
    backbone.trainable = encoder_trainable
    *skips, x = backbone(EncoderPreprocessing(encoder, name="preprocess")(inputs))
    for index, (filters, skip) in enumerate(zip(decoder_filters, reversed(skips), strict=True)):
        x = _upsample(x, filters, dropout, name=f"up{index}")
        x = layers.Concatenate(name=f"skip{index}")([x, skip])
    logits = layers.Conv2DTranspose(NUM_CLASSES, 3, strides=2, padding="same", name="logits")(x)
    probabilities = layers.Softmax(name="probabilities", dtype="float32")(logits)
    model = keras.Model(inputs, probabilities, name=f"unet_{encoder}")
    # Keras' MobileNetV2 uses momentum 0.999: after a short training from scratch its moving statistics
    # are still near their initial values and inference collapses to one class.
    for layer in all_layers(model):
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = batchnorm_momentum
    return model


def unet_builder(model: ModelParams, image_size: int) -> Callable[[], keras.Model]:
    """A zero-argument factory for params.yaml's U-Net (training calls it only when not resuming)."""
    return lambda: build_unet(
        image_size,
        model.encoder,
        model.encoder_weights,
        model.encoder_trainable,
        model.mobilenet_alpha,
        tuple(model.decoder_filters),
        model.dropout,
        model.batchnorm_momentum,
    )


def all_layers(model: keras.Model):
    """Every layer, those of nested models (the encoder) included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)

import zipfile

import numpy as np
import pytest

from mlcore.model.serialize import load_model, save_model, weights_digest
from mlcore.model.unet import EncoderWeightsUnavailable, build_unet


@pytest.mark.parametrize("encoder", ["mobilenet_v2", "vgg19"])
def test_both_encoders_give_three_class_probabilities_per_pixel(encoder):
    model = build_unet(64, encoder, decoder_filters=(16, 8, 8, 8))
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 64, 64, 3)).astype(np.float32)
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (2, 64, 64, 3)
    assert np.allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)


def test_frozen_encoder_has_no_trainable_encoder_weights():
    model = build_unet(32, "mobilenet_v2", encoder_trainable=False, decoder_filters=(8, 8, 8, 8))
    encoder = model.get_layer("mobilenet_v2_encoder")
    assert encoder.trainable_weights == [] and model.trainable_weights


def test_saved_model_is_byte_stable_and_round_trips(tmp_path):
    model = build_unet(32, "mobilenet_v2", decoder_filters=(8, 8, 8, 8))
    save_model(model, tmp_path / "a.keras")
    save_model(model, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.keras") as archive:
        config = archive.read("config.json").decode()
        assert "date_saved" not in archive.read("metadata.json").decode()
    assert "shared_object_id" not in config  # memory addresses, different in every process
    restored = load_model(tmp_path / "a.keras")
    assert weights_digest(restored) == weights_digest(model)
    save_model(restored, tmp_path / "c.keras")  # a loaded-then-saved model (a resumed training) ...
    assert (tmp_path / "c.keras").read_bytes() == (tmp_path / "a.keras").read_bytes()  # ... is the same file


def test_encoder_weights_from_a_path(tmp_path):
    import keras

    pretrained = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None, alpha=0.35)
    pretrained.save_weights(tmp_path / "encoder.weights.h5")
    model = build_unet(32, "mobilenet_v2", encoder_weights=str(tmp_path / "encoder.weights.h5"))
    loaded = model.get_layer("mobilenet_v2_encoder").get_layer("Conv1").get_weights()[0]
    assert np.array_equal(loaded, pretrained.get_layer("Conv1").get_weights()[0])
    fresh = build_unet(32, "mobilenet_v2").get_layer("mobilenet_v2_encoder").get_layer("Conv1").get_weights()[0]
    assert not np.array_equal(loaded, fresh)
    with pytest.raises(EncoderWeightsUnavailable, match="no such file"):
        build_unet(32, "mobilenet_v2", encoder_weights=str(tmp_path / "missing.weights.h5"))


def test_unavailable_imagenet_weights_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty weights cache: keras must try to fetch
    with pytest.raises(EncoderWeightsUnavailable) as error:
        build_unet(128, "mobilenet_v2", encoder_weights="imagenet")
    assert "~/.keras/models/" in str(error.value) and "model.encoder_weights" in str(error.value)

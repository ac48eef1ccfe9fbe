"""Export the released model as a TensorFlow SavedModel with the calibration folded in.

The SavedModel is what TF Serving, KServe and our own server load: one `serve` signature that takes
uint8 images already at the model's size and returns calibrated class probabilities and the class
mask, so no consumer has to re-implement the calibrator.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import keras
import tensorflow as tf

from mlcore.calibration import EPSILON

SIGNATURE = "serve"


def _interpolate(x: tf.Tensor, xs: list[float], ys: list[float]) -> tf.Tensor:
    """np.interp in TensorFlow: piecewise linear through (xs, ys), clamped outside [xs[0], xs[-1]]."""
    knots_x = tf.constant(xs, tf.float32)
    knots_y = tf.constant(ys, tf.float32)
    if len(xs) == 1:
        return tf.fill(tf.shape(x), knots_y[0])
    index = tf.clip_by_value(tf.searchsorted(knots_x, tf.reshape(x, [-1]), side="right"), 1, len(xs) - 1)
    x0, x1 = tf.gather(knots_x, index - 1), tf.gather(knots_x, index)
    y0, y1 = tf.gather(knots_y, index - 1), tf.gather(knots_y, index)
    flat = tf.reshape(x, [-1])
    weight = tf.where(x1 > x0, (tf.clip_by_value(flat, knots_x[0], knots_x[-1]) - x0) / (x1 - x0), 0.0)
    return tf.reshape(y0 + weight * (y1 - y0), tf.shape(x))


def calibrate(probabilities: tf.Tensor, calibrator: dict) -> tf.Tensor:
    """mlcore.calibration.apply_calibrator, as TensorFlow ops (float32)."""
    if calibrator["method"] == "temperature":
        log_p = tf.math.log(tf.clip_by_value(probabilities, EPSILON, 1.0))
        return tf.nn.softmax(log_p / calibrator["temperature"], axis=-1)
    columns = [_interpolate(probabilities[..., k], c["x"], c["y"]) for k, c in enumerate(calibrator["classes"])]
    stacked = tf.stack(columns, axis=-1)
    total = tf.reduce_sum(stacked, axis=-1, keepdims=True)
    uniform = tf.fill(tf.shape(stacked), 1.0 / len(columns))
    return tf.where(total > 0, stacked / tf.where(total > 0, total, 1.0), uniform)


@contextlib.contextmanager
def _variables_in_name_order():
    """Keras lists an export's variables in the order the traced graph captured them, which changes from
    process to process; by unique name, the SavedModel's bytes depend on the model alone."""
    from keras.src.export import saved_model_export_archive as export_archive

    original = export_archive._list_variables_used_by_fns

    def ordered(fns):
        groups = original(fns)
        for group in groups:
            names = [v.name for v in group]
            if len(set(names)) != len(names):
                raise RuntimeError("variable names are not unique; cannot order the export deterministically")
        return tuple(sorted(group, key=lambda v: v.name) for group in groups)

    export_archive._list_variables_used_by_fns = ordered
    try:
        yield
    finally:
        export_archive._list_variables_used_by_fns = original


def export_saved_model(model: keras.Model, calibrator: dict, image_size: int, path: Path) -> None:
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = calibrate(model(tf.cast(images, tf.float32), training=False), calibrator)
        return {"probabilities": probabilities, "mask": tf.cast(tf.argmax(probabilities, axis=-1), tf.uint8)}

    archive.add_endpoint(SIGNATURE, serve, input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8)])
    with _variables_in_name_order():
        archive.write_out(str(path), verbose=False)
    _drop_fingerprint_uuid(path / "fingerprint.pb")


def _drop_fingerprint_uuid(path: Path) -> None:
    """The fingerprint's hashes describe the model; its uuid is random per write, so it is cleared."""
    from tensorflow.core.protobuf import fingerprint_pb2

    fingerprint = fingerprint_pb2.FingerprintDef.FromString(path.read_bytes())
    fingerprint.ClearField("uuid")
    path.write_bytes(fingerprint.SerializeToString(deterministic=True))

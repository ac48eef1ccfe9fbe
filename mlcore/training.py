"""Deterministic, resumable training.

Each epoch is a separate `fit` call on a dataset whose order and augmentation are functions of
(seed, epoch) alone, the learning rate is a function of the step, and every piece of state that
changes during training (weights, optimizer moments and step, dropout seed state) is in the
checkpoint. So a run killed after epoch k and resumed from its checkpoint computes exactly what an
uninterrupted run computes, bit for bit. Checkpoints are tied to a fingerprint of the inputs: a
changed parameter or data set never resumes from a stale checkpoint.

A training's fixed cost is the tracing of its train step (bench/warmup.py). Two things keep it short: the
optimizer's variables exist before the first step (created inside the step, they make TensorFlow trace it
twice), and Grappler stays off (it rewrites the ~12k-node step graph for 2-3 s and buys no speed on CPU here).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import keras
import tensorflow as tf

from mlcore.attacks import fgsm, logits_model
from mlcore.data.tfrecords import evaluation_batches, training_batches
from mlcore.io import write_json
from mlcore.model.losses import make_loss
from mlcore.model.serialize import load_model, save_model
from mlcore.model.unet import NUM_CLASSES
from mlcore.params import TrainParams

log = logging.getLogger(__name__)
# Each epoch (and each validation pass) is a finite dataset by design; Keras warns when it first
# finds the end of one whose length it does not know yet.
warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
History = list[dict[str, float]]


@keras.saving.register_keras_serializable(package="mlcore")
class AdversarialTraining(keras.Model):
    """The U-Net, with a train step that first replaces the first ceil(fraction x batch) examples of each batch
    by their FGSM examples at `epsilon` (cross-entropy, against the weights of that step), then steps as Keras
    does; loss and metrics are those of the mixed batch. FGSM draws no random numbers, so adversarial training
    stays bit-deterministic and resumes exactly from a checkpoint. Only checkpoints hold this class; `plain`
    gives the functional model that is saved and served. `fraction` and `epsilon` are read when the step is
    traced: set them before `fit`."""

    fraction = 0.0
    epsilon = 0.0

    def train_step(self, data):
        images, labels = data
        size = tf.cast(tf.shape(images)[0], tf.float32)
        count = tf.cast(tf.math.ceil(self.fraction * size), tf.int32)
        attacked = fgsm(logits_model(self), images[:count], labels[:count], self.epsilon)
        return super().train_step((tf.concat([attacked, images[count:]], axis=0), labels))

    def plain(self) -> keras.Model:
        return keras.Model(self.inputs, self.outputs, name=self.name)


def adversarial_steps(model: keras.Model, settings: TrainParams) -> keras.Model:
    """The model to fit: itself for plain training, else the same layers with the adversarial train step."""
    if not settings.adversarial.fraction:
        return model
    if not isinstance(model, AdversarialTraining):  # a resumed checkpoint already is one
        model = AdversarialTraining(inputs=model.inputs, outputs=model.outputs, name=model.name)
    model.fraction = settings.adversarial.fraction
    model.epsilon = float(settings.adversarial.epsilon)
    return model


class CheckpointMirror(Protocol):
    """A remote copy of a checkpoint folder, so that a run restarted elsewhere resumes (the stage passes
    mlcore.storage.checkpoints.S3Mirror; the library does not know where checkpoints are kept)."""

    url: str

    def names(self) -> list[str]: ...

    def upload(self, path: Path) -> None: ...

    def download_all(self, directory: Path) -> list[str]: ...

    def delete(self, names: list[str]) -> None: ...


class CheckpointStore:
    """Epoch checkpoints of one training run, identified by the fingerprint of its inputs, optionally
    mirrored to S3 so that a run restarted elsewhere (a retried pod) resumes too."""

    def __init__(self, directory: Path, fingerprint: str, mirror: CheckpointMirror | None = None):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.state_file = self.directory / "state.json"
        self.mirror = mirror

    def latest(self) -> tuple[int, keras.Model, History] | None:
        if not self.state_file.exists() and self.mirror and self.mirror.names():
            log.info("fetching checkpoints from %s", self.mirror.url)
            self.mirror.download_all(self.directory)
        if not self.state_file.exists():
            return None
        state = json.loads(self.state_file.read_text())
        if state["fingerprint"] != self.fingerprint:
            log.info("checkpoints in %s belong to other inputs; starting afresh", self.directory)
            self.clear()
            return None
        model = load_model(self.directory / state["checkpoint"], compile=True)
        return state["epoch"], model, state["history"]

    def save(self, epoch: int, model: keras.Model, history: History) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch:04d}.keras"
        save_model(model, self.directory / name)
        write_json(
            self.state_file, {"fingerprint": self.fingerprint, "epoch": epoch, "checkpoint": name, "history": history}
        )
        stale = [old.name for old in self.directory.glob("epoch-*.keras") if old.name != name]
        for old in stale:
            (self.directory / old).unlink()
        if self.mirror:
            self.mirror.upload(self.directory / name)
            self.mirror.upload(self.state_file)  # last: it must only ever name an uploaded checkpoint
            self.mirror.delete(stale)

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        if self.mirror:
            self.mirror.delete(self.mirror.names())


def compile_model(model: keras.Model, settings: TrainParams, steps_per_epoch: int) -> None:
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, settings.epochs * steps_per_epoch)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=make_loss(settings.loss),
        metrics=[keras.metrics.MeanIoU(NUM_CLASSES, sparse_y_pred=False, name="mean_iou")],
        jit_compile=False,
    )
    model.optimizer.build(model.trainable_variables)  # now, not inside the first step: one trace instead of two


def disable_graph_rewrites() -> None:
    """Run the train step's graph as traced. Fixed for every training because the rewrites change float
    results (the weights' bits), and a setting of the process: call it before the first training step."""
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def train(
    build: Callable[[], keras.Model],
    prepared_dir: Path,
    train_count: int,
    settings: TrainParams,
    seed: int,
    checkpoints: CheckpointStore | None,
    tensorboard_dir: Path | None = None,
    observers: Sequence[keras.callbacks.Callback] = (),
) -> tuple[keras.Model, History]:
    """Train for settings.epochs, resuming from the latest matching checkpoint if there is one
    (short trials pass no store: nothing to resume, nothing to write). Observers are Keras callbacks that
    watch (a benchmark's timer); each epoch is one `fit`."""
    disable_graph_rewrites()
    steps_per_epoch = math.ceil(train_count / settings.batch_size)
    resumed = checkpoints.latest() if checkpoints else None
    if resumed is None:
        start, model, history = 0, adversarial_steps(build(), settings), []
        compile_model(model, settings, steps_per_epoch)
    else:
        start, model, history = resumed
        model = adversarial_steps(model, settings)
        log.info("resuming from the checkpoint of epoch %d in %s", start, checkpoints.directory)
    callbacks = [*observers, *([keras.callbacks.TensorBoard(str(tensorboard_dir))] if tensorboard_dir else [])]
    validation = evaluation_batches(prepared_dir, "validation", settings.batch_size)
    for epoch in range(start, settings.epochs):
        batches = training_batches(
            prepared_dir, settings.batch_size, seed, epoch, settings.shuffle_buffer, settings.horizontal_flip
        )
        result = model.fit(
            batches,
            validation_data=validation,
            steps_per_epoch=steps_per_epoch,
            initial_epoch=epoch,
            epochs=epoch + 1,
            shuffle=False,
            verbose=2,
            callbacks=callbacks,
        )
        history.append({name: float(values[-1]) for name, values in sorted(result.history.items())})
        if checkpoints:
            checkpoints.save(epoch + 1, model, history)
    return (model.plain() if isinstance(model, AdversarialTraining) else model), history

"""Adversarial robustness: the attacks themselves (real TensorFlow gradients), the robustness stage of the shared
tiny pipeline (real DVC), and adversarial training's determinism and resume."""

from __future__ import annotations

import itertools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from mlcore.attacks import attack_loss, fgsm, logits_model, pgd
from mlcore.model.serialize import load_model, weights_digest
from mlcore.model.unet import build_unet
from mlcore.params import AdversarialTrainingParams, TrainParams, load_params
from mlcore.predict import predict_split
from mlcore.robustness import measure_robustness
from mlcore.robustness_scores import epsilon_key
from mlcore.training import AdversarialTraining, CheckpointStore, train
from tests.helpers import REPO_ROOT, run
from tests.shared_pipeline import ReleasedPipeline

SEED = tf.constant([1, 0], tf.int64)
OFF = AdversarialTrainingParams(fraction=0.0, epsilon=2)  # plain training


@pytest.fixture(scope="module")
def batch() -> tuple[keras.Model, tf.Tensor, tf.Tensor]:
    keras.utils.set_random_seed(0)
    model = build_unet(32, "mobilenet_v2", decoder_filters=(8, 8, 8, 8))
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (4, 32, 32, 3)).astype(np.float32))  # 8-bit pixels, as prepared
    labels = tf.constant(rng.integers(0, 3, (4, 32, 32)).astype(np.int32))
    return logits_model(model), images, labels


def test_a_zero_budget_leaves_every_pixel_as_it_was(batch):
    model, images, labels = batch
    assert np.array_equal(fgsm(model, images, labels, 0.0).numpy(), images.numpy())
    assert np.array_equal(pgd(model, images, labels, 0.0, 3, 0.25, SEED).numpy(), images.numpy())


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_perturbations_stay_in_the_budget_and_the_pixel_range_and_raise_the_loss(batch, attack):
    model, images, labels = batch
    epsilon = 8.0
    if attack == "fgsm":
        perturbed = fgsm(model, images, labels, epsilon)
    else:
        perturbed = pgd(model, images, labels, epsilon, 5, 0.25, SEED)
    change = np.abs(perturbed.numpy() - images.numpy())
    assert change.max() <= epsilon + 1e-4 and change.max() > epsilon / 2
    assert perturbed.numpy().min() >= 0 and perturbed.numpy().max() <= 255
    assert np.array_equal(perturbed.numpy(), np.round(perturbed.numpy()))  # an 8-bit image, as a client sends
    assert attack_loss(model, perturbed, labels, 1.0) > attack_loss(model, images, labels, 1.0)


def test_pgd_random_start_is_a_function_of_its_seed(batch):
    model, images, labels = batch
    first = pgd(model, images, labels, 4.0, 2, 0.25, SEED).numpy()
    assert np.array_equal(first, pgd(model, images, labels, 4.0, 2, 0.25, SEED).numpy())
    assert not np.array_equal(first, pgd(model, images, labels, 4.0, 2, 0.25, tf.constant([2, 0], tf.int64)).numpy())


def _read(project, path: str) -> dict:
    return json.loads((project / path).read_text())


@pytest.mark.slow
def test_the_stage_reproduces_the_clean_metrics_at_budget_zero(tiny_release: ReleasedPipeline):
    """The shared tiny pipeline's robustness stage: budget 0 scores exactly what evaluate scored, larger budgets
    change predictions, and the curve and pictures are written."""
    evaluation = _read(tiny_release.project, "metrics/evaluate.json")
    robustness = _read(tiny_release.project, "metrics/robustness.json")
    assert robustness["test_images"] == evaluation["test_images"]
    for attack, results in robustness["attacks"].items():
        for model in ("raw", "calibrated"):
            clean = results[epsilon_key(0)][model]
            assert clean["mean_iou"] == evaluation[model]["mean_iou"], attack
            assert clean["pet_iou"] == evaluation[model]["per_class"]["pet"]["iou"], attack
            assert clean["pixel_accuracy"] == evaluation[model]["pixel_accuracy"], attack
            assert clean["label_flip_fraction"] == 0.0
    assert robustness["attack_target"] == "calibrated"  # a temperature calibrator: the attack goes through it
    assert robustness["strongest"]["epsilon"] == 8 and robustness["strongest"]["calibrated"]["label_flip_fraction"] > 0
    rows = (tiny_release.project / "plots/robustness/mean_iou.csv").read_text().splitlines()
    assert rows[0] == "epsilon,strongest_calibrated,fgsm_raw,fgsm_calibrated,pgd_raw,pgd_calibrated"
    assert len(rows) == 6
    for plot in ("mean_iou.png", "examples.png"):
        assert (tiny_release.project / "plots/robustness" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _train(prepared, count: int, epochs: int, learning_rate: float, adversarial: AdversarialTrainingParams, **kwargs):
    """A 32 px U-Net trained in this process, from the same seed every time."""
    keras.backend.clear_session()  # the same layer names in every build of this process
    keras.utils.set_random_seed(42)
    tf.config.experimental.enable_op_determinism()
    settings = TrainParams(
        epochs=epochs,
        batch_size=8,
        learning_rate=learning_rate,
        loss="cross_entropy",
        horizontal_flip=True,
        shuffle_buffer=64,
        adversarial=adversarial,
    )
    build = lambda: build_unet(32, "mobilenet_v2", decoder_filters=(16, 8, 8, 8))  # noqa: E731
    return train(build, prepared, count, settings, 42, **kwargs)[0]


@pytest.mark.slow
def test_attacks_lower_a_trained_models_iou_as_the_budget_grows(tiny_release: ReleasedPipeline):
    """The tiny pipeline's 3-epoch model predicts little but background, so there is little for an attack to take:
    this trains one that segments (20 epochs, ~10 s) and measures it as the stage does."""
    prepared = tiny_release.project / "data/prepared"
    count = _read(prepared, "manifest.json")["splits"]["train"]["count"]
    model = _train(prepared, count, 20, 0.01, OFF, checkpoints=None)
    test = predict_split(model, prepared, "test", 8)
    settings = load_params(REPO_ROOT / "params.yaml").robustness
    measured = measure_robustness(model, {"method": "temperature", "temperature": 1.0}, test, settings, 8)
    curves = {
        attack: [measured.results[attack][epsilon_key(e)]["calibrated"]["mean_iou"] for e in (0, 1, 2, 4, 8)]
        for attack in ("fgsm", "pgd")
    }
    assert curves["pgd"][0] > 0.5, curves  # it does segment
    assert all(later < earlier for earlier, later in itertools.pairwise(curves["pgd"])), curves
    assert curves["pgd"][-1] < curves["pgd"][0] - 0.2, curves
    assert curves["fgsm"][-1] < curves["fgsm"][0] - 0.1, curves
    assert curves["pgd"][-1] < curves["fgsm"][-1], curves  # ten projected steps find more than one


@pytest.mark.slow
def test_a_forced_rerun_of_the_stage_gives_the_same_bytes(tiny_release: ReleasedPipeline, tmp_path):
    project, _ = tiny_release.copy(tmp_path / "project")

    def outputs() -> dict:
        stage = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["robustness"]
        return {out["path"]: out["md5"] for out in stage["outs"]}

    before = outputs()
    plots = {f"plots/robustness/{name}" for name in ("mean_iou.csv", "mean_iou.png", "examples.png")}
    assert set(before) == {"metrics/robustness.json", *plots}
    run(project, "dvc", "repro", "--force", "--single-item", "robustness")
    assert outputs() == before


class Killed(Exception):
    pass


class KillAtEpoch(keras.callbacks.Callback):
    """Stops a training in process once `epoch` epochs are checkpointed, as a killed pod would stop."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Killed


@pytest.mark.slow
def test_adversarial_training_is_deterministic_resumes_exactly_and_changes_the_weights(
    tiny_release: ReleasedPipeline, tmp_path
):
    prepared = tiny_release.project / "data/prepared"
    count = _read(prepared, "manifest.json")["splits"]["train"]["count"]
    half = AdversarialTrainingParams(fraction=0.5, epsilon=4)

    adversarial = _train(prepared, count, 2, 0.002, half, checkpoints=None)
    assert type(adversarial) is not AdversarialTraining  # what is saved and served is the plain U-Net
    assert weights_digest(_train(prepared, count, 2, 0.002, half, checkpoints=None)) == weights_digest(adversarial)
    plain = _train(prepared, count, 2, 0.002, OFF, checkpoints=None)
    assert weights_digest(plain) != weights_digest(adversarial)

    store = CheckpointStore(tmp_path / "checkpoints", "fingerprint")
    with pytest.raises(Killed):
        _train(prepared, count, 2, 0.002, half, checkpoints=store, observers=[KillAtEpoch(1)])
    assert _read(tmp_path, "checkpoints/state.json")["epoch"] == 1
    assert isinstance(load_model(tmp_path / "checkpoints/epoch-0001.keras"), AdversarialTraining)
    resumed = _train(prepared, count, 2, 0.002, half, checkpoints=store)
    assert weights_digest(resumed) == weights_digest(adversarial)

"""Plain against adversarial training on the default data: training time, and the calibrated test mean IoU clean
and under each attack at each budget of params.yaml robustness.

Run from the repository root after `make run` (it reads data/prepared and the searched configuration). Both
trainings use the searched configuration for train.epochs; the adversarial one replaces
`--fraction` of every batch by FGSM examples at `--epsilon` grey levels (default: half of each batch at 2).
"""

from __future__ import annotations

import argparse
import statistics

from bench.timing import epoch_timer
from mlcore.params import AdversarialTrainingParams, load_params
from mlcore.runtime import pin_runtime
from mlcore.stages.paths import BEST_PATH, PREPARED_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--epsilon", type=int, default=2)
    arguments = parser.parse_args()
    params = load_params()
    pin_runtime(params.runtime, params.seed)
    import keras

    from mlcore.calibration import apply_calibrator, fit_calibrator
    from mlcore.io import read_json
    from mlcore.metrics import scores
    from mlcore.model.unet import unet_builder
    from mlcore.predict import predict_split
    from mlcore.robustness import measure_robustness
    from mlcore.robustness_scores import epsilon_key
    from mlcore.training import train
    from mlcore.tuning import apply

    params = apply(params, read_json(BEST_PATH)["config"])
    manifest = read_json(PREPARED_DIR / "manifest.json")
    build = unet_builder(params.model, manifest["image_size"])
    batch_size = params.train.batch_size
    variants = {
        "plain": AdversarialTrainingParams(fraction=0.0, epsilon=arguments.epsilon),
        f"FGSM {arguments.fraction:.0%} of each batch, eps {arguments.epsilon}": AdversarialTrainingParams(
            fraction=arguments.fraction, epsilon=arguments.epsilon
        ),
    }
    rows = []
    for name, adversarial in variants.items():
        keras.backend.clear_session()
        keras.utils.set_random_seed(params.seed)
        settings = params.train.revised(adversarial=adversarial)
        timer = epoch_timer()
        count = manifest["splits"]["train"]["count"]
        model, _ = train(build, PREPARED_DIR, count, settings, params.seed, None, observers=[timer])
        seconds = timer.seconds[0], statistics.median(timer.seconds[1:])  # the first epoch also traces the step
        calibration = predict_split(model, PREPARED_DIR, "calibration", batch_size)
        calibrator = fit_calibrator(params.calibrate.method, calibration.probabilities, calibration.labels)
        test = predict_split(model, PREPARED_DIR, "test", batch_size)
        measured = measure_robustness(model, calibrator, test, params.robustness, batch_size)
        clean = scores(apply_calibrator(calibrator, test.probabilities), test.labels, params.calibrate.ece_bins)
        rows.append((name, seconds, clean["mean_iou"], measured.results))

    epsilons = params.robustness.epsilons
    columns = [(attack, epsilon) for attack in params.robustness.attacks for epsilon in epsilons if epsilon]
    print(f"calibrated test mean IoU ({len(test.ids)} images), clean and under attack (eps in grey levels)")
    attacked = " ".join(f"{a} {e:>2}".rjust(8) for a, e in columns)
    print(f"{'training':<32} {'1st ep s':>8} {'epoch s':>8} {'clean':>7} {attacked}")
    for name, (first, epoch), clean, results in rows:
        cells = " ".join(f"{results[a][epsilon_key(e)]['calibrated']['mean_iou']:8.4f}" for a, e in columns)
        print(f"{name:<32} {first:8.1f} {epoch:8.1f} {clean:7.4f} {cells}")
    ratio = rows[1][1][1] / rows[0][1][1]
    print(f"epoch s: the median epoch after the first (which traces the step); adversarial / plain = {ratio:.2f}x")


if __name__ == "__main__":
    main()

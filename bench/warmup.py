"""A training's fixed cost (issue #12): the first epoch against steady ones, each epoch being what `train`
runs (one `fit` with its validation pass), through the real input pipeline and mlcore.training.train.
Needs data/prepared (`make run` first).

Prints the model-building time, each epoch's seconds, and the fixed cost: the first epoch minus the fastest
later one (target <= 8 s). The machine's other load shows up as an outlier epoch; the minimum ignores it.
"""

from __future__ import annotations

import time

from bench.timing import epoch_timer
from mlcore.params import load_params
from mlcore.runtime import pin_runtime

EPOCHS = 4


def main() -> None:
    params = load_params()
    pin_runtime(params.runtime, params.seed)

    from mlcore.io import read_json
    from mlcore.model.unet import unet_builder
    from mlcore.stages.paths import PREPARED_DIR
    from mlcore.training import train

    manifest = read_json(PREPARED_DIR / "manifest.json")
    build = unet_builder(params.model, manifest["image_size"])
    started = time.perf_counter()
    build()
    built = time.perf_counter() - started
    timer = epoch_timer()
    settings = params.train.revised(epochs=EPOCHS)
    train(build, PREPARED_DIR, manifest["splits"]["train"]["count"], settings, params.seed, None, observers=[timer])
    first, steady = timer.seconds[0], min(timer.seconds[1:])
    print(f"build model {built:6.2f} s")
    print("epochs " + " | ".join(f"{e:6.2f} s" for e in timer.seconds))
    print(f"fixed cost {first - steady:6.2f} s (first epoch minus the fastest later one; target <= 8)")


if __name__ == "__main__":
    main()

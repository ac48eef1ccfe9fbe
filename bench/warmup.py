"""Where a training's fixed cost goes (issue #12): model building, the first step (tracing the train
function), a step with the last partial batch's shape (a retrace?), the first validation step, and a whole
first epoch against steady ones, through the real input pipeline. Needs data/prepared (`make run` first).

Prints seconds per phase and the fixed cost (first epoch minus a steady epoch; target <= 8 s)."""

from __future__ import annotations

import time
from pathlib import Path

from mlcore.params import load_params
from mlcore.runtime import pin_runtime

EPOCHS = 3


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    params = load_params()
    pin_runtime(params.runtime, params.seed)
    import numpy as np

    from mlcore.data.tfrecords import evaluation_batches, training_batches
    from mlcore.io import read_json
    from mlcore.stages.paths import PREPARED_DIR
    from mlcore.stages.train import model_builder, train_settings
    from mlcore.training import compile_model

    manifest = read_json(PREPARED_DIR / "manifest.json")
    count, t, size = manifest["splits"]["train"]["count"], params.train, manifest["image_size"]
    steps = -(-count // t.batch_size)
    rng = np.random.default_rng(0)

    def batch(n: int):
        return rng.integers(0, 256, (n, size, size, 3)).astype("float32"), rng.integers(0, 3, (n, size, size))

    holder = {}
    build = timed(lambda: holder.setdefault("model", model_builder(params, size)()))
    model = holder["model"]
    compile_model(model, train_settings(params), steps)
    first = timed(lambda: model.train_on_batch(*batch(t.batch_size)))
    steady = timed(lambda: model.train_on_batch(*batch(t.batch_size)))
    partial = timed(lambda: model.train_on_batch(*batch(count % t.batch_size or t.batch_size)))
    evaluate = timed(lambda: model.test_on_batch(*batch(t.batch_size)))
    print(f"build model {build:6.2f} s | first step {first:6.2f} s | steady step {steady:6.2f} s | "
          f"partial-batch step {partial:6.2f} s | first validation step {evaluate:6.2f} s")  # fmt: skip

    model = model_builder(params, size)()
    compile_model(model, train_settings(params), steps)
    validation = evaluation_batches(Path(PREPARED_DIR), "validation", t.batch_size)
    epochs = [
        timed(lambda epoch=epoch: model.fit(
            training_batches(PREPARED_DIR, t.batch_size, params.seed, epoch, t.shuffle_buffer, t.horizontal_flip),
            validation_data=validation, epochs=1, verbose=0))
        for epoch in range(EPOCHS)
    ]  # fmt: skip
    fixed = epochs[0] - min(epochs[1:])
    print("epochs " + " | ".join(f"{e:6.2f} s" for e in epochs) + f" | fixed cost {fixed:6.2f} s (target <= 8)")


if __name__ == "__main__":
    main()

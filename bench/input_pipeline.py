"""Training throughput through the real input pipeline (TFRecord shards, shuffle, stateless flip)
against the same model fed from in-memory tensors. Needs data/prepared (run `make run` first).

Prints images per second for both and their ratio; the pipeline should keep training at >= 0.95.
"""

from __future__ import annotations

import time
from pathlib import Path

from mlcore.params import load_params
from mlcore.runtime import pin_runtime

EPOCHS = 3


def main() -> None:
    params = load_params()
    pin_runtime(params.runtime, params.seed)
    import tensorflow as tf

    from mlcore.data.tfrecords import load_split_arrays, training_batches
    from mlcore.io import read_json
    from mlcore.model.unet import unet_builder
    from mlcore.stages.paths import PREPARED_DIR
    from mlcore.training import compile_model

    manifest = read_json(PREPARED_DIR / "manifest.json")
    count, t = manifest["splits"]["train"]["count"], params.train
    build = unet_builder(params.model, manifest["image_size"])
    _, images, labels = load_split_arrays(Path(PREPARED_DIR), "train")
    in_memory = tf.data.Dataset.from_tensor_slices((images, labels)).batch(t.batch_size).cache()

    def throughput(make_batches) -> float:
        model = build()
        compile_model(model, params.train, -(-count // t.batch_size))
        model.fit(make_batches(0), epochs=1, verbose=0)  # trace and warm up
        start = time.perf_counter()
        for epoch in range(1, EPOCHS + 1):
            model.fit(make_batches(epoch), epochs=1, verbose=0)
        return EPOCHS * count / (time.perf_counter() - start)

    memory = throughput(lambda epoch: in_memory)
    pipeline = throughput(
        lambda epoch: training_batches(
            PREPARED_DIR, t.batch_size, params.seed, epoch, t.shuffle_buffer, t.horizontal_flip
        )
    )
    print(f"in-memory tensors : {memory:7.1f} images/s")
    print(f"input pipeline    : {pipeline:7.1f} images/s")
    print(f"ratio             : {pipeline / memory:7.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()

"""What the cap on oneDNN's instruction set (params.yaml runtime.max_cpu_isa) costs: training steps per second
of the configured U-Net at train.batch_size on synthetic data, with each cap, each in its own process
(oneDNN reads the cap once, when it loads). Prints steps/s and images/s per cap and the ratio to no cap."""

from __future__ import annotations

import json
import subprocess
import sys
import time

CAPS = ("all", "avx512_core", "avx2")
STEPS = 30


def measure() -> dict:
    import numpy as np

    from mlcore.params import load_params
    from mlcore.runtime import pin_runtime

    params = load_params()
    pin_runtime(params.runtime.revised(max_cpu_isa=sys.argv[2]), params.seed)
    from mlcore.model.unet import unet_builder
    from mlcore.training import compile_model

    size, batch = params.prepare.image_size, params.train.batch_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, 3, (batch, size, size)).astype("int32")
    model = unet_builder(params.model, size)()
    compile_model(model, params.train, STEPS)
    model.train_on_batch(images, labels)  # trace
    start = time.perf_counter()
    for _ in range(STEPS):
        model.train_on_batch(images, labels)
    seconds = time.perf_counter() - start
    return {"steps_per_s": STEPS / seconds, "images_per_s": STEPS * batch / seconds}


def main() -> None:
    results = {}
    for cap in CAPS:
        out = subprocess.run(
            [sys.executable, "-m", "bench.isa_cap", "--measure", cap], check=True, capture_output=True, text=True
        ).stdout
        results[cap] = json.loads(out.strip().splitlines()[-1])
    for cap, result in results.items():
        ratio = result["images_per_s"] / results["all"]["images_per_s"]
        print(
            f"max_cpu_isa={cap:<12} {result['steps_per_s']:6.2f} steps/s {result['images_per_s']:7.1f} img/s "
            f"({ratio:.2f}x of no cap)"
        )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--measure":
        print(json.dumps(measure()))
    else:
        main()

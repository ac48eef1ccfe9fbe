"""Pin everything that changes TensorFlow's numerics, before TensorFlow is imported.

On CPU, training is bit-deterministic given: the seed, op determinism, XLA off, and a fixed intra-op
thread count and oneDNN setting. The last two are read when TensorFlow loads, so this must run first.
"""

from __future__ import annotations

import os
import sys

from mlcore.params import RuntimeParams


def pin_runtime(settings: RuntimeParams, seed: int) -> None:
    onednn = "1" if settings.onednn_opts else "0"
    if "tensorflow" in sys.modules and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != onednn:
        raise RuntimeError("pin_runtime() must run before TensorFlow is imported")
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = onednn
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(settings.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(settings.inter_op_threads)
    tf.config.optimizer.set_jit(False)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def runtime_facts(settings: RuntimeParams) -> dict:
    """What a provenance record needs to say about how the numbers were computed."""
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "python": sys.version.split()[0],
        "intra_op_threads": settings.intra_op_threads,
        "inter_op_threads": settings.inter_op_threads,
        "onednn_opts": settings.onednn_opts,
    }

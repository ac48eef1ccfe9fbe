"""Pin everything that changes TensorFlow's numerics, before TensorFlow is imported.

On CPU, training is bit-deterministic given: the seed, op determinism, XLA off, a fixed intra-op thread
count, the oneDNN setting and the cap on oneDNN's instruction set. The last three are read when TensorFlow
loads, so this must run first.
"""

from __future__ import annotations

import os
import sys

from mlcore.params import RuntimeParams


def numerics_environment(onednn_opts: bool, max_cpu_isa: str) -> dict[str, str]:
    """The variables TensorFlow and oneDNN read once, when they load, that change floating-point results."""
    wanted = {"TF_ENABLE_ONEDNN_OPTS": "1" if onednn_opts else "0"}
    if max_cpu_isa != "all":
        wanted["ONEDNN_MAX_CPU_ISA"] = max_cpu_isa.upper()
    return wanted


def pin_environment(settings: RuntimeParams) -> None:
    """Set what TensorFlow reads when it loads; refuses once it has loaded with other values."""
    wanted = numerics_environment(settings.onednn_opts, settings.max_cpu_isa)
    if "tensorflow" in sys.modules and any(os.environ.get(k) != v for k, v in wanted.items()):
        raise RuntimeError("the runtime must be pinned before TensorFlow is imported")
    os.environ.update(wanted)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pin_tensorflow(settings: RuntimeParams, seed: int) -> None:
    """Threads, XLA, seeds and op determinism: after TensorFlow is imported, before it runs any op."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(settings.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(settings.inter_op_threads)
    tf.config.optimizer.set_jit(False)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def pin_runtime(settings: RuntimeParams, seed: int) -> None:
    """Both pins, for a script that imports TensorFlow only after this call."""
    pin_environment(settings)
    pin_tensorflow(settings, seed)


def runtime_facts(settings: RuntimeParams) -> dict:
    """What a provenance record needs to say about how the numbers were computed."""
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "python": sys.version.split()[0],
        "intra_op_threads": settings.intra_op_threads,
        "inter_op_threads": settings.inter_op_threads,
        "onednn_opts": settings.onednn_opts,
        "max_cpu_isa": settings.max_cpu_isa,
    }

"""`python -m mlcore.serving [--release-dir release] [--provenance models/provenance.json] [--port 8080]`"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--release-dir", type=Path, default=Path("release"))
    parser.add_argument("--provenance", type=Path, default=Path("models/provenance.json"))
    parser.add_argument("--version", default=os.environ.get("MLCORE_MODEL_VERSION", "unversioned"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    arguments = parser.parse_args()
    if not (arguments.release_dir / "release.json").exists():
        raise SystemExit(f"error: {arguments.release_dir} holds no released model; run `make run` (the gate must pass)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # compute what the evaluate stage computed: the oneDNN settings the model was trained and evaluated with
    if arguments.provenance.exists():
        from mlcore.runtime import numerics_environment

        recorded = json.loads(arguments.provenance.read_text()).get("environment", {})
        os.environ.update(numerics_environment(recorded.get("onednn_opts", False), recorded.get("max_cpu_isa", "all")))
    import tensorflow as tf
    import uvicorn

    from mlcore.serving.app import create_app
    from mlcore.serving.feedback import FeedbackStore
    from mlcore.serving.model import ReleasedModel

    tf.config.threading.set_intra_op_parallelism_threads(arguments.threads)
    logging.basicConfig(level=logging.INFO)
    model = ReleasedModel(arguments.release_dir, arguments.provenance, arguments.version)
    app = create_app(model, FeedbackStore.from_environment())
    uvicorn.run(app, host=arguments.host, port=arguments.port, log_level="warning")


if __name__ == "__main__":
    main()

"""`python -m mlcore.serving [--release-dir release] [--provenance models/provenance.json] [--port 8080]`

Feedback (a write path into training data) is off unless MLCORE_FEEDBACK_URL is set, and then needs
MLCORE_FEEDBACK_TOKEN (see mlcore/serving/feedback.py).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release-dir", type=Path, default=Path("release"))
    parser.add_argument("--provenance", type=Path, default=Path("models/provenance.json"))
    parser.add_argument("--version", default=os.environ.get("MLCORE_MODEL_VERSION", "unversioned"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    parser.add_argument("--max-batch", type=int, default=32, help="images per model call (dynamic batching)")
    parser.add_argument("--batch-delay-ms", type=float, default=2.0, help="wait for company at an idle model")
    parser.add_argument("--workers", type=int, default=2, help="threads that parse, decode and encode requests")
    arguments = parser.parse_args()
    if not (arguments.release_dir / "release.json").exists():
        raise SystemExit(f"error: {arguments.release_dir} holds no released model; run `make run` (the gate must pass)")
    from mlcore.serving.feedback import FeedbackConfig, FeedbackConfigError

    try:
        feedback = FeedbackConfig.from_environment()
    except FeedbackConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mlcore.serving.model import recorded_numerics

    os.environ.update(recorded_numerics(arguments.provenance))
    import tensorflow as tf
    import uvicorn

    from mlcore.serving.app import Batching, create_app
    from mlcore.serving.bodies import DroppableHttpTools
    from mlcore.serving.model import ReleasedModel

    tf.config.threading.set_intra_op_parallelism_threads(arguments.threads)
    logging.basicConfig(level=logging.INFO)
    model = ReleasedModel(arguments.release_dir, arguments.provenance, arguments.version)
    batching = Batching(
        max_batch=arguments.max_batch, max_delay_s=arguments.batch_delay_ms / 1000, workers=arguments.workers
    )
    app = create_app(model, feedback, batching=batching)
    # TensorFlow leaves millions of objects that live as long as the process; out of the collector's sight, a
    # request that allocates many (a large JSON body) no longer sets off full collections that hold the GIL
    # for a second, and health keeps answering
    gc.freeze()
    logging.getLogger("mlcore.serving").info("feedback %s", "on, to " + feedback.url if feedback else "off")
    uvicorn.run(app, host=arguments.host, port=arguments.port, log_level="warning", http=DroppableHttpTools)


if __name__ == "__main__":
    main()

"""`python -m mlcore.stages NAME [OPTIONS]`: the one entry point of every DVC stage.

It validates all of params.yaml before any work, pins what TensorFlow reads when it loads, imports the
stage module `mlcore.stages.NAME` (whose imports may load TensorFlow), pins threads, seeds and op
determinism if they did, and calls the module's `run(params, **options)`. Stage modules are therefore
plain functions with top-level imports; an error whose message says what to do exits without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mlcore.params import ParamsError, load_params
from mlcore.pins import PinsError
from mlcore.runtime import pin_environment, pin_tensorflow
from mlcore.stages._common import StageError

# In pipeline order; each is the module mlcore/stages/NAME.py (not imported here: TensorFlow is not pinned yet)
STAGES = (
    "fetch",
    "inflow",
    "prepare",
    "plan",
    "trial",
    "select",
    "train",
    "calibrate",
    "evaluate",
    "robustness",
    "champion",
    "compare",
    "release",
    "provenance",
)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mlcore.stages", description=__doc__)
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE", help=", ".join(STAGES))
    for name in STAGES:
        stages.add_parser(name)
    trial = stages.choices["trial"]
    trial.add_argument("--rung", type=int, required=True, help="params.yaml tune.rungs index")
    trial.add_argument("--slot", type=int, required=True, help="one of that rung's slots")
    provenance = stages.choices["provenance"]
    provenance.add_argument("--allow-dirty", action="store_true", help="record a dirty tree instead of refusing")
    return parser


def main(arguments: list[str] | None = None) -> None:
    options = vars(parser().parse_args(arguments))
    name = options.pop("stage")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        params = load_params()
        pin_environment(params.runtime)
        stage = importlib.import_module(f"mlcore.stages.{name}")
        if "tensorflow" in sys.modules:  # the stage's imports loaded it: pin it before it runs any op
            pin_tensorflow(params.runtime, params.seed)
        stage.run(params, **options)
    except (ParamsError, StageError, PinsError) as exc:  # PinsError: pins.yaml (inflow, champion) is unusable
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()

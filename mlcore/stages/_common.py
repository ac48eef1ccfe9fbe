"""What every stage entry point does first: validate all of params.yaml, set up logging."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from mlcore.params import Params, ParamsError, load_params


def run_stage(body: Callable[[Params], None]) -> None:
    """Validate params.yaml before any work, then run the stage; known errors exit with their message."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        params = load_params()
    except ParamsError as exc:
        sys.exit(f"error: {exc}")
    try:
        body(params)
    except StageError as exc:
        sys.exit(f"error: {exc}")


class StageError(RuntimeError):
    """A failure whose message already tells the user what is wrong and what to do."""

import os
import random

import pytest

from tests.shared_pipeline import ReleasedPipeline, build_once

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # as params.yaml runtime pins them for the stages
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Longest first (they take minutes; everything else takes seconds). `--dist worksteal` hands each worker a
# contiguous block of this order and lets an idle worker take tests from the tail of a busy one's queue.
LONGEST_FIRST = (
    "tests/test_workflows.py::test_workflows_run_locally",
    "tests/test_replay.py::test_retrain",
    "tests/test_retrain.py",
    "tests/test_replay.py",
    "tests/test_pipeline.py",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--shuffle", type=int, metavar="SEED", help="run the tests in an order shuffled by SEED")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first; with --shuffle SEED in a seeded random order instead (every worker draws the same one), to
    show that no test depends on another having run."""
    if (seed := config.getoption("--shuffle")) is not None:
        random.Random(seed).shuffle(items)
        return

    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory: pytest.TempPathFactory) -> ReleasedPipeline:
    """The tiny released project of tests/shared_pipeline.py, shared by all workers of this test run (xdist
    gives each worker a folder inside the run's own)."""
    base = tmp_path_factory.getbasetemp()
    return build_once(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)

"""One tiny released project per test run, for every test that needs a trained pipeline.

The first test that asks builds it (the same steps as `make run` and `make release VERSION=v0.1.0 STAGE=prod`
on the tiny configuration, with its own S3 server); the other pytest-xdist workers wait for it under a file
lock. Nobody changes it afterwards: a test works on its own copy, whose S3 server runs on a port of its own.
"""

from __future__ import annotations

import fcntl
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import IDENTITY, TINY_OVERRIDES, copy_project, free_port_block, git, run, write_params

RELEASE_TAG = "model@v0.1.0"


@dataclass(frozen=True)
class ReleasedPipeline:
    """The shared build: read it, copy it, never write into it."""

    folder: Path

    @property
    def project(self) -> Path:
        return self.folder / "project"

    @property
    def repro_output(self) -> str:
        """What its `dvc repro` printed."""
        return (self.folder / "repro.log").read_text()

    def copy(self, into: Path) -> tuple[Path, dict[str, str]]:
        """A private copy and the environment its commands need: MLCORE_S3_PORT names a free port, to which
        the copy's DVC remote is moved (its server is stopped; `python -m mlcore.ops.remote up` starts it)."""
        root = Path(shutil.copytree(self.project, into, symlinks=True))
        port = free_port_block()
        config = root / ".dvc" / "config.local"
        config.write_text(re.sub(r"http://127\.0\.0\.1:\d+", f"http://127.0.0.1:{port}", config.read_text()))
        return root, {"MLCORE_S3_PORT": str(port), **IDENTITY}


def build_once(shared_dir: Path) -> ReleasedPipeline:
    """The shared build in `shared_dir` (a folder every worker of this test run sees), built if missing."""
    built = ReleasedPipeline(shared_dir / "released-pipeline")
    with (shared_dir / "released-pipeline.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if (failed := shared_dir / "released-pipeline.failed").exists():
            raise RuntimeError(f"the shared tiny pipeline did not build (in another worker):\n{failed.read_text()}")
        if not (built.folder / "complete").exists():
            shutil.rmtree(built.folder, ignore_errors=True)
            built.folder.mkdir()
            try:
                _build(built.folder)
            except Exception as exc:
                failed.write_text(str(exc))
                raise
            (built.folder / "complete").touch()
    return built


def _build(folder: Path) -> None:
    root = copy_project(folder / "project")
    write_params(root, TINY_OVERRIDES)
    git(root, "commit", "-qam", "tiny configuration")
    env = {"MLCORE_S3_PORT": str(free_port_block()), **IDENTITY}

    def sh(*command: str) -> str:
        return run(root, *command, env=env).stdout

    sh("python", "-m", "mlcore.ops.remote", "up")
    try:
        (folder / "repro.log").write_text(sh("dvc", "repro"))
        sh("python", "-m", "mlcore.stages", "provenance")
        sh("dvc", "push", "--run-cache")
        git(root, "add", "-A")
        git(root, "commit", "-qm", "model v0.1.0")
        sh("python", "-m", "mlcore.ops.release", RELEASE_TAG.removeprefix("model@"), "--stage", "prod")
    finally:
        sh("python", "-m", "mlcore.ops.remote", "down")

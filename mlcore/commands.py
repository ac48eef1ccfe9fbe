"""The command-line tools the project drives (git, dvc, gto, this Python), run as subprocesses: this
environment's executables first on PATH (stage commands say `python`), output captured unless it should reach
the log as it comes, and a failure raised with the tool's own words. Callers that know more turn CommandFailed
into their own error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


class CommandFailed(RuntimeError):
    """A command exited non-zero; `stdout` and `stderr` hold what it said (empty when it was not captured)."""

    def __init__(self, command: tuple[str, ...], cwd: Path | None, result: subprocess.CompletedProcess):
        self.returncode = result.returncode
        self.stdout, self.stderr = result.stdout or "", result.stderr or ""
        where = f" in {cwd}" if cwd else ""
        said = f"{self.stdout}{self.stderr}" or "(its output is above)\n"
        super().__init__(f"`{' '.join(command)}` failed{where}:\n{said}")


def tools_environment() -> dict[str, str]:
    """The environment with this Python's scripts (dvc, gto, python) first on PATH."""
    return {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def run(*command: str, cwd: Path | None = None, capture: bool = True, env: dict[str, str] | None = None) -> str:
    """The command's standard output (captured), or "" when it goes straight to this process's output; `env`
    adds variables."""
    environment = tools_environment() | (env or {})
    result = subprocess.run(command, cwd=cwd, capture_output=capture, text=True, env=environment)
    if result.returncode != 0:
        raise CommandFailed(command, cwd, result)
    return result.stdout or ""


def git(*args: str, cwd: Path | None = None) -> str:
    """git's output without its trailing newline."""
    return run("git", *args, cwd=cwd).strip()


def git_show(revision: str, path: str | Path, cwd: Path | None = None) -> str | None:
    """The text of `path` at `revision`, or None when the revision has no such file."""
    try:
        return run("git", "show", f"{revision}:{path}", cwd=cwd)
    except CommandFailed:
        return None


def dvc(*args: str, cwd: Path | None = None, capture: bool = True) -> str:
    return run(sys.executable, "-m", "dvc", *args, cwd=cwd, capture=capture)


def gto(*args: str, cwd: Path | None = None) -> str:
    return run(str(Path(sys.executable).parent / "gto"), *args, cwd=cwd)

"""The import rules of pyproject.toml [tool.importlinter] hold: the ML core imports nothing of the stages, ops,
storage, serving or workflows, the library nothing of the workflows, no stage imports another, and no package
has an import cycle."""

from tests.helpers import REPO_ROOT, run


def test_import_contracts_are_kept():
    result = run(REPO_ROOT, "lint-imports", "--no-cache", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout

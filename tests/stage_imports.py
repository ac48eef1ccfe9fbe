"""The project code a stage runs: the closure of its entry point's imports (every `import` and `from ...
import`, at any depth of the module, so function-level imports count), as dvc.yaml `deps` must list it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO_ROOT

PACKAGES = ("mlcore", "workflows")
STAGE_RUNNER = "mlcore.stages"


def _module_file(name: str) -> Path | None:
    path = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.AST, package: str) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    # a module imports its parent packages too
    return {".".join(n.split(".")[:i]) for n in names if n.startswith(PACKAGES) for i in range(1, n.count(".") + 2)}


def _is_code(path: Path) -> bool:
    """An __init__.py holding only a docstring (or nothing) runs no code of its own."""
    body = ast.parse(path.read_text()).body
    return path.name != "__init__.py" or any(not isinstance(n, ast.Expr) for n in body)


def import_closure(module: str) -> set[str]:
    """Repository-relative paths of every project file `python -m module` imports."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo += _imported(ast.parse(path.read_text()), package)
    return {p.relative_to(REPO_ROOT).as_posix() for p in seen if _is_code(p)}


def entry_modules(cmd: str) -> list[str]:
    """The modules `python -m MODULE ...` runs; the stage runner `python -m mlcore.stages NAME` also imports
    the stage module NAME (by name, at run time, so its closure is not the runner's)."""
    module, *arguments = cmd.split("-m ", 1)[1].split()
    if module == STAGE_RUNNER:
        return [f"{module}.__main__", f"{module}.{arguments[0]}"]
    return [module]


def code_deps(cmd: str) -> list[str]:
    """The dvc.yaml deps a stage with command `python -m MODULE ...` needs: its import closure, with a whole
    package folder in place of its files when the stage imports every code file in it."""
    closure = set().union(*(import_closure(module) for module in entry_modules(cmd)))
    folders = {str(Path(f).parent) for f in closure}
    whole = {folder for folder in folders if folder.count("/") >= 1 and _code_files(folder) <= closure}
    return sorted(whole | {f for f in closure if str(Path(f).parent) not in whole})


def _code_files(folder: str) -> set[str]:
    return {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / folder).glob("*.py") if _is_code(p)}

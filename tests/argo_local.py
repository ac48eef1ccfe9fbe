"""Execute a generated Argo DAG without Kubernetes: each task's own container command, in its own fresh
clone (empty DVC cache), in dependency order, with Argo's parameter substitution and Secret env.

This stands in for the Argo controller and kubelet, which cannot exist here. It implements only what
our manifests use: DAG tasks with `dependencies` or `depends: a && b`, container templates, input/output parameters,
`{{workflow.parameters.*}}`, `{{inputs.parameters.*}}`, `{{tasks.*.outputs.parameters.*}}`, env values
and secretKeyRef.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path

import yaml

from tests.helpers import VENV_BIN, git

REFERENCE = re.compile(r"\{\{\s*([a-zA-Z0-9_.\-]+)\s*\}\}")


@dataclass
class TaskRun:
    name: str
    clone: Path
    outputs: dict[str, str] = field(default_factory=dict)


def task_dependencies(task: dict) -> set[str]:
    """From `dependencies: [a, b]` or `depends: "a && b"` (the only `depends` form our manifests use)."""
    if "depends" in task:
        return {part.strip().split(".")[0] for part in task["depends"].split("&&")}
    return set(task.get("dependencies", []))


def substitute(text: str, values: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        if match.group(1) not in values:
            raise KeyError(f"unresolved Argo reference {match.group(0)}")
        return values[match.group(1)]

    return REFERENCE.sub(replace, text)


def run_workflow(manifest: Path, repo: Path, workdir: Path, parameters: dict[str, str], secrets: dict) -> dict:
    spec = yaml.safe_load(manifest.read_text())["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    workflow = {p["name"]: p.get("value", "") for p in spec.get("arguments", {}).get("parameters", [])}
    workflow.update(parameters)
    values = {f"workflow.parameters.{k}": v for k, v in workflow.items()}
    dag = templates[spec["entrypoint"]]["dag"]["tasks"]
    order = TopologicalSorter({t["name"]: task_dependencies(t) for t in dag}).static_order()
    tasks = {t["name"]: t for t in dag}
    workdir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, TaskRun] = {}
    for name in order:
        task = tasks[name]
        template = templates[task["template"]]
        inputs = {p["name"]: p.get("value") for p in template.get("inputs", {}).get("parameters", [])}
        for argument in task.get("arguments", {}).get("parameters", []):
            inputs[argument["name"]] = substitute(argument["value"], values)
        scope = {**values, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}
        container = template["container"]
        clone = workdir / name
        git(workdir, "clone", "-q", str(repo), str(clone))
        git(clone, "checkout", "-q", workflow["revision"])
        env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(workdir)}
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = substitute(variable["value"], scope)
            else:
                ref = variable["valueFrom"]["secretKeyRef"]
                env[variable["name"]] = secrets[ref["name"]][ref["key"]]
        output_dir = workdir / f"{name}.outputs"
        env["MLCORE_OUTPUTS_DIR"] = str(output_dir)
        command = [substitute(part, scope) for part in container["command"] + container.get("args", [])]
        result = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise AssertionError(f"task {name} failed:\n{result.stdout}\n{result.stderr}")
        run = TaskRun(name, clone)
        for output in template.get("outputs", {}).get("parameters", []):
            run.outputs[output["name"]] = (output_dir / Path(output["valueFrom"]["path"]).name).read_text()
            values[f"tasks.{name}.outputs.parameters.{output['name']}"] = run.outputs[output["name"]]
        runs[name] = run
    return runs

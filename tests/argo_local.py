"""Execute a generated Argo DAG without Kubernetes: each task's own container command, in its own fresh
clone (empty DVC cache), in dependency order, with Argo's parameter substitution and Secret env.

This stands in for the Argo controller and kubelet, which cannot exist here. It implements only what
our manifests use: DAG tasks with `depends: a && b`, container templates, input/output parameters,
`{{workflow.*}}`, `{{inputs.parameters.*}}`, `{{tasks.*.outputs.parameters.*}}`, env values,
secretKeyRef (optional ones too), output artifacts (copied into a local "artifact repository"),
Prometheus gauge values, `when: a == b`, a retry (a pod killed while a condition holds is run again in a
new pod), and resource templates, whose rendered manifest is recorded instead of applied: no Kubernetes
API exists here, so that one step is a stand-in.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path

import yaml

from tests.helpers import VENV_BIN, git

REFERENCE = re.compile(r"\{\{\s*([a-zA-Z0-9_.\-]+)\s*\}\}")
POD_OUTPUTS = "/tmp/outputs/"
WORKFLOW_NAME = "local-run"


@dataclass
class TaskRun:
    name: str
    clone: Path
    log: str = ""
    attempts: int = 1
    outputs: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    gauges: dict[str, str] = field(default_factory=dict)
    applied: dict | None = None  # a resource template's manifest, as it would be sent to the API server
    skipped: bool = False


class TaskFailed(AssertionError):
    def __init__(self, name: str, log: str):
        super().__init__(f"task {name} failed:\n{log}")
        self.name, self.log = name, log


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


def _pod_path(output_dir: Path, path: str) -> Path:
    assert path.startswith(POD_OUTPUTS), f"{path}: tasks must write their outputs under {POD_OUTPUTS}"
    return output_dir / path.removeprefix(POD_OUTPUTS)


def _run_pod(command: list[str], clone: Path, env: dict, kill_when: Callable[[], bool] | None) -> tuple[int, str]:
    """Run one pod's command; when kill_when() becomes true, SIGKILL it as a node failure would."""
    log = clone.parent / f"{clone.name}.log"
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=clone, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        while process.poll() is None:
            if kill_when is not None and kill_when():
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return -9, log.read_text()
            time.sleep(0.05)
    return process.returncode, log.read_text()


def run_workflow(
    manifest: Path,
    repo: Path,
    workdir: Path,
    parameters: dict[str, str],
    secrets: dict,
    kill_first_attempt: dict[str, Callable[[], bool]] | None = None,
) -> dict[str, TaskRun]:
    """Run every task; `kill_first_attempt[task]` kills that task's first pod when it returns true, and the
    task is retried in a fresh pod (clone), as Argo's retryStrategy does after an infrastructure failure."""
    spec = yaml.safe_load(manifest.read_text())["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    workflow = {p["name"]: p.get("value", "") for p in spec.get("arguments", {}).get("parameters", [])}
    workflow.update(parameters)
    values = {f"workflow.parameters.{k}": v for k, v in workflow.items()}
    values["workflow.name"] = WORKFLOW_NAME
    dag = templates[spec["entrypoint"]]["dag"]["tasks"]
    order = TopologicalSorter({t["name"]: task_dependencies(t) for t in dag}).static_order()
    tasks = {t["name"]: t for t in dag}
    workdir.mkdir(parents=True, exist_ok=True)
    artifact_repository = workdir / "artifact-repository"
    runs: dict[str, TaskRun] = {}
    for name in order:
        task = tasks[name]
        template = templates[task["template"]]
        inputs = {p["name"]: p.get("value") for p in template.get("inputs", {}).get("parameters", [])}
        for argument in task.get("arguments", {}).get("parameters", []):
            inputs[argument["name"]] = substitute(argument["value"], values)
        scope = {**values, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}
        if "when" in task:
            left, _, right = substitute(task["when"], values).partition("==")
            if left.strip() != right.strip():
                runs[name] = TaskRun(name, workdir, skipped=True)
                continue
        if "resource" in template:
            runs[name] = TaskRun(
                name, workdir, applied=yaml.safe_load(substitute(template["resource"]["manifest"], scope))
            )
            continue
        container = template["container"]
        env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = substitute(variable["value"], scope)
                continue
            ref = variable["valueFrom"]["secretKeyRef"]
            if ref["key"] in secrets.get(ref["name"], {}):
                env[variable["name"]] = secrets[ref["name"]][ref["key"]]
            else:
                assert ref.get("optional"), f"task {name}: Secret {ref['name']}/{ref['key']} is missing"
        command = [substitute(part, scope) for part in container["command"] + container.get("args", [])]
        kill_when = (kill_first_attempt or {}).get(name)
        attempt = 0
        while True:
            attempt += 1
            clone = workdir / f"{name}.pod{attempt}"
            git(workdir, "clone", "-q", str(repo), str(clone))
            git(clone, "checkout", "-q", workflow["revision"])
            output_dir = workdir / f"{name}.pod{attempt}.outputs"
            pod_env = {**env, "HOME": str(workdir), "MLCORE_OUTPUTS_DIR": str(output_dir)}
            started = time.monotonic()
            code, log = _run_pod(command, clone, pod_env, kill_when if attempt == 1 else None)
            if code == -9 and attempt <= int(template.get("retryStrategy", {}).get("limit", 0)):
                continue
            if code != 0:
                raise TaskFailed(name, log)
            break
        run = TaskRun(name, clone, log, attempt)
        for output in template.get("outputs", {}).get("parameters", []):
            run.outputs[output["name"]] = _pod_path(output_dir, output["valueFrom"]["path"]).read_text()
            values[f"tasks.{name}.outputs.parameters.{output['name']}"] = run.outputs[output["name"]]
        for artifact in template.get("outputs", {}).get("artifacts", []):
            assert artifact.get("archive") == {"none": {}}, f"{artifact['name']}: the UI shows only unarchived files"
            stored = artifact_repository / WORKFLOW_NAME / name / artifact["name"]
            stored.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_pod_path(output_dir, artifact["path"]), stored)
            run.artifacts[artifact["name"]] = stored
        metric_scope = {**scope, "duration": f"{time.monotonic() - started:.3f}",
                        **{f"outputs.parameters.{k}": v for k, v in run.outputs.items()}}  # fmt: skip
        for metric in template.get("metrics", {}).get("prometheus", []):
            run.gauges[metric["name"]] = substitute(metric["gauge"]["value"], metric_scope)
        runs[name] = run
    return runs

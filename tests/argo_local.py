"""Execute a generated Argo DAG without Kubernetes: each task's own container command, in a container of
the project image built at the revision (empty volumes, empty DVC cache), in dependency order, with Argo's
parameter substitution and Secret env.

This stands in for the Argo controller and kubelet, which cannot exist here. It implements only what
our manifests use: DAG tasks with `depends: a && b`, container templates, input/output parameters,
`{{workflow.*}}` and `{{inputs.parameters.*}}` (only the declared ones; substituted in the whole template
before the pod runs, as the controller's SubstituteParams does; a reference left unresolved outside the
metrics fails the task), `{{tasks.*.outputs.parameters.*}}`, env values,
secretKeyRef (optional ones too), output artifacts (copied into a local "artifact repository") and input
artifacts `from` other tasks' outputs, Prometheus gauge values and labels (`{{duration}}`: the last attempt's,
where Argo's spans the retries), `when: a == b`, and resource templates,
whose rendered manifest is recorded instead of applied: no Kubernetes API exists here, so that one step
is a stand-in: its successCondition and failureCondition are not evaluated; the caller's `on_apply` runs what
the controller would (a Workflow: run_workflow again, synchronously, its failure raising as a failed step).

Failures and retries follow Argo v4.1.2 (workflow/controller/operator.go): a main container that exits
non-zero, OOM-killed or SIGKILLed (exit 137) included, makes the node Failed; a deleted pod makes it Error
("pod deleted"). The node is retried only when the template's retryStrategy says so: its retryPolicy
(Always: Failed and Error; OnFailure: Failed; OnError: Error) AND its `expression`, evaluated over
lastRetry.{status,exitCode,message,duration}. Expressions are evaluated for the subset of expr-lang our
manifests use (==, !=, in [...], matches "re", ||, &&, !); OnTransientError is not modelled.
Not modelled either: synchronization (mutexes), parallelism, deadlines and resource timeouts, ownerReferences
(setOwnerReference), CronWorkflow scheduling and its concurrencyPolicy, pod GC and artifact GC.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path

import yaml

from mlcore.storage.private import private_file

TASK_ARTIFACT = re.compile(r"\{\{tasks\.([a-z0-9-]+)\.outputs\.artifacts\.([a-z0-9-]+)\}\}")
REFERENCE = re.compile(r"\{\{\s*([a-zA-Z0-9_.\-]+)\s*\}\}")
POD_OUTPUTS = "/tmp/outputs/"
POD_INPUTS = "/tmp/inputs/"
WORKFLOW_NAME = "local-run"
WORKFLOW_UID = "00000000-0000-4000-8000-000000000001"


@dataclass(frozen=True)
class Fault:
    """Something infrastructure does to a task's first pod once `when()` becomes true: "oom" (the kernel's
    OOM killer SIGKILLs main: Failed, exit 137, reason OOMKilled) or "delete" (the pod is deleted: Error)."""

    kind: str
    when: Callable[[], bool]


@dataclass(frozen=True)
class NodeResult:
    """What Argo records of one attempt (wfv1.NodeStatus): phase, the main container's exit code, message."""

    status: str  # Succeeded, Failed or Error
    exit_code: str  # a string, "-1" when the main container did not terminate
    message: str


def classify(code: int, fault: str | None) -> NodeResult:
    """How Argo's controller marks an attempt (operator.go: inferFailedReason, and the pod-deleted path)."""
    if fault == "delete":
        return NodeResult("Error", "-1", "pod deleted")
    if code == 0:
        return NodeResult("Succeeded", "0", "")
    reason = "OOMKilled" if fault == "oom" else "Error"
    return NodeResult("Failed", str(code), f"main: {reason} (exit code {code})")


def evaluate_expression(expression: str, last: NodeResult) -> bool:
    """expr-lang, for the operators our retry expressions use, over Argo's lastRetry variables."""
    python = re.sub(r'(\S+) matches ("(?:[^"\\]|\\.)*")', r"_matches(\2, \1)", expression)
    python = python.replace("||", " or ").replace("&&", " and ")
    python = re.sub(r"!(?!=)", " not ", python)
    scope = {
        "lastRetry": type(
            "LastRetry",
            (),
            {"status": last.status, "exitCode": last.exit_code, "message": last.message, "duration": "1"},
        ),
        "_matches": lambda pattern, text: re.search(pattern, text) is not None,
        "asInt": int,
    }
    return bool(eval(python, {"__builtins__": {}}, scope))  # our own generated expression, in a test


def should_retry(template: dict, last: NodeResult, attempts: int) -> bool:
    """Argo's processNodeRetries decision after attempt number `attempts` ended with `last`."""
    strategy = template.get("retryStrategy")
    if not strategy or last.status == "Succeeded" or attempts > int(strategy.get("limit", 0)):
        return False
    policy = strategy.get("retryPolicy") or ("Always" if "expression" in strategy else "OnFailure")
    phases = {"Always": {"Failed", "Error"}, "OnFailure": {"Failed"}, "OnError": {"Error"}}[policy]
    if last.status not in phases:
        return False
    return "expression" not in strategy or evaluate_expression(strategy["expression"], last)


@dataclass
class TaskRun:
    name: str
    clone: Path
    log: str = ""
    attempts: int = 1
    results: list[NodeResult] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    gauges: dict[str, str] = field(default_factory=dict)
    gauge_labels: dict[str, dict[str, str]] = field(default_factory=dict)
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


def substitute_template(template: dict, values: dict[str, str]) -> dict:
    """The template as the controller's SubstituteParams makes it before the pod runs: every reference it knows
    replaced in every field (the value JSON-escaped into the template's JSON, as Argo's template.Replace does),
    the others left for later (a gauge's `{{duration}}` and `{{outputs.parameters.*}}`)."""

    def replace(match: re.Match) -> str:
        return json.dumps(values[match.group(1)])[1:-1] if match.group(1) in values else match.group(0)

    return json.loads(REFERENCE.sub(replace, json.dumps(template)))


def _pod_path(local_dir: Path, path: str, pod_dir: str = POD_OUTPUTS) -> Path:
    assert path.startswith(pod_dir), f"{path}: must lie under {pod_dir}"
    return local_dir / path.removeprefix(pod_dir)


def container_run(engine: str, name: str, env: dict, env_file: Path, volumes: dict[Path, str]) -> list[str]:
    """`<engine> run` options for a container as its pod spec makes the kubelet run it: uid:gid 1000, a
    read-only root filesystem with only the given host folders (the pod's volumes, chowned to the uid)
    writable, all capabilities dropped, no new privileges, the runtime's default seccomp profile, the host's
    network. A volume's path may end in ":ro". Secrets go through `env_file` (mode 0600), never the command
    line. Append the image and the command."""
    private_file(env_file).write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    mounts = []
    for folder, path in volumes.items():
        os.chown(folder, 1000, 1000)
        mounts += ["--volume", f"{folder}:{path}"]
    # podman's --read-only alone would still mount a writable /tmp, /var/tmp and /run; Kubernetes does not
    read_only = ["--read-only", *(["--read-only-tmpfs=false"] if engine == "podman" else [])]
    return [
        engine,
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        *read_only,
        "--user",
        "1000:1000",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--env-file",
        str(env_file),
        *mounts,
    ]


class ImagePods:
    """Pods as containers of the project image (podman) run as container_run() says: the image's own code at
    its commit (`mlcore:<commit>`), the pod's volumes as host folders (a test can look inside afterwards).
    The network is the host's, so a pod reaches the S3 and git servers on 127.0.0.1; a cluster's network
    policy is not modelled.
    The template's image must be this build, by digest (<repository>@<digest of mlcore:<commit>>)."""

    def __init__(self):
        self.engine = os.environ.get("CONTAINER_ENGINE") or "podman"

    @staticmethod
    def volume_dir(root: Path, volume: str) -> Path:
        return root / "volumes" / volume

    def run(
        self,
        image: str,
        command: list[str],
        env: dict,
        mounts: dict[str, str],
        root: Path,
        revision: str,
        fault: Fault | None,
    ) -> tuple[NodeResult, str]:
        digest = subprocess.run(
            [self.engine, "image", "inspect", "--format", "{{.Digest}}", f"mlcore:{revision}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert image.endswith(f"@{digest}"), f"{image} is not the build of {revision} (mlcore:{revision}, {digest})"
        name = f"mlcore-{root.name.replace('.', '-')}-{os.getpid()}-{time.monotonic_ns()}"
        volumes = {self.volume_dir(root, volume): path for path, volume in mounts.items()}
        podman = [
            *container_run(self.engine, name, env, root / "env", volumes),
            "--workdir",
            "/opt/mlcore",
            f"mlcore:{revision}",
            *command,
        ]

        def kill(process: subprocess.Popen) -> None:
            subprocess.run([self.engine, "kill", "--signal", "KILL", name], capture_output=True)

        return _supervise(podman, root.with_suffix(".log"), fault, kill)


def _supervise(
    command: list[str], log: Path, fault: Fault | None, kill: Callable[[subprocess.Popen], None]
) -> tuple[NodeResult, str]:
    """Run one pod's main process; when the fault's condition becomes true, SIGKILL it as the kernel or the
    kubelet would, and classify the attempt as Argo does."""
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        while process.poll() is None:
            if fault is not None and fault.when():
                kill(process)
                process.wait()
                return classify(128 + signal.SIGKILL, fault.kind), log.read_text()
            time.sleep(0.05)
    return classify(process.returncode, None), log.read_text()


def run_workflow(
    manifest: Path,
    workdir: Path,
    parameters: dict[str, str],
    secrets: dict,
    faults: dict[str, Fault] | None = None,
    on_apply: Callable[[dict], None] | None = None,
    name: str = WORKFLOW_NAME,
) -> dict[str, TaskRun]:
    """Run every task (nested DAG templates included) in the image `mlcore:<revision>`; `faults[task]` strikes
    that task's first pod, which Argo then retries in a fresh pod or not, as the template's retryStrategy
    decides. A resource template's manifest is recorded and handed to `on_apply`, which stands in for the
    controller that would act on it (the test's KServe stand-in, or this function again for a Workflow) and
    raises if the resource's failure condition would hold."""
    spec = yaml.safe_load(manifest.read_text())["spec"]
    workflow = {p["name"]: p.get("value", "") for p in spec.get("arguments", {}).get("parameters", [])}
    workflow.update(parameters)
    values = {f"workflow.parameters.{k}": v for k, v in workflow.items()}
    uid = WORKFLOW_UID if name == WORKFLOW_NAME else str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    values |= {"workflow.name": name, "workflow.uid": uid}
    workdir.mkdir(parents=True, exist_ok=True)
    executor = _Executor({t["name"]: t for t in spec["templates"]}, values, workdir, secrets, faults or {}, on_apply)
    executor.dag(executor.templates[spec["entrypoint"]], {})
    return executor.runs


class _Executor:
    def __init__(self, templates, values, workdir, secrets, faults, on_apply):
        self.templates, self.values, self.workdir = templates, values, workdir
        self.secrets, self.faults, self.on_apply = secrets, faults, on_apply
        self.runs: dict[str, TaskRun] = {}
        self.pods = ImagePods()

    def _artifact(self, reference: str, inputs: dict[str, Path]) -> Path:
        """A file for `from: {{tasks.X.outputs.artifacts.Y}}` or `from: {{inputs.artifacts.Y}}`."""
        if match := TASK_ARTIFACT.fullmatch(reference):
            return self.runs[match.group(1)].artifacts[match.group(2)]
        assert reference.startswith("{{inputs.artifacts."), f"{reference}: this artifact source is not modelled"
        return inputs[reference.strip("{}").removeprefix("inputs.artifacts.")]

    def dag(self, template: dict, inputs: dict[str, Path]) -> None:
        tasks = {t["name"]: t for t in template["dag"]["tasks"]}
        for name in TopologicalSorter({n: task_dependencies(t) for n, t in tasks.items()}).static_order():
            task = tasks[name]
            called = self.templates[task["template"]]
            artifacts = {
                a["name"]: self._artifact(a["from"], inputs) for a in task.get("arguments", {}).get("artifacts", [])
            }
            if "when" in task:
                left, _, right = substitute(task["when"], self.values).partition("==")
                if left.strip() != right.strip():
                    self.runs[name] = TaskRun(name, self.workdir, skipped=True)
                    continue
            if "dag" in called:
                self.dag(called, artifacts)
                continue
            self.task(name, task, called, artifacts)

    def task(self, name: str, task: dict, template: dict, artifacts: dict[str, Path]) -> None:
        inputs = {p["name"]: p.get("value") for p in template.get("inputs", {}).get("parameters", [])}
        # as Argo's ProcessArgs: an argument the template does not declare is ignored
        for argument in task.get("arguments", {}).get("parameters", []):
            if argument["name"] in inputs:
                inputs[argument["name"]] = substitute(argument["value"], self.values)
        unset = [name for name, value in inputs.items() if value is None]
        assert not unset, f"task {name}: inputs.parameters.{unset[0]} had no value"  # Argo's words
        scope = {**self.values, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}
        template = substitute_template(template, scope)
        unresolved = REFERENCE.findall(json.dumps({k: v for k, v in template.items() if k != "metrics"}))
        assert not unresolved, f"task {name}: unresolved Argo reference(s) {unresolved}"
        if "resource" in template:
            applied = yaml.safe_load(template["resource"]["manifest"])
            self.runs[name] = TaskRun(name, self.workdir, applied=applied)
            if self.on_apply:
                self.on_apply(applied)
            return
        container = template["container"]
        env = {}
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = variable["value"]
                continue
            ref = variable["valueFrom"]["secretKeyRef"]
            if ref["key"] in self.secrets.get(ref["name"], {}):
                env[variable["name"]] = self.secrets[ref["name"]][ref["key"]]
            else:
                assert ref.get("optional"), f"task {name}: Secret {ref['name']}/{ref['key']} is missing"
        command = container["command"] + container.get("args", [])
        mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"task {name}: the pod needs a writable /tmp (outputs, inputs)"
        attempt, results = 0, []
        while True:
            attempt += 1
            root = self.workdir / f"{name}.pod{attempt}"
            scratch = self.pods.volume_dir(root, mounts["/tmp"])
            output_dir = scratch / "outputs"
            for volume in set(mounts.values()):
                self.pods.volume_dir(root, volume).mkdir(parents=True)
            for artifact in template.get("inputs", {}).get("artifacts", []):  # as Argo's init container does
                target = _pod_path(scratch / "inputs", artifact["path"], POD_INPUTS)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(artifacts[artifact["name"]], target)
            started = time.monotonic()
            image = container["image"]
            fault = self.faults.get(name) if attempt == 1 else None
            result, log = self.pods.run(
                image, command, env, mounts, root, self.values["workflow.parameters.revision"], fault
            )
            results.append(result)
            if result.status == "Succeeded":
                break
            if not should_retry(template, result, attempt):
                raise TaskFailed(name, f"{result.status}: {result.message}\n{log}")
        workspace = env.get("MLCORE_WORKSPACE", "/workspace/repo")
        clone = self.pods.volume_dir(root, mounts[workspace.rsplit("/", 1)[0]]) / workspace.rsplit("/", 1)[1]
        run = TaskRun(name, clone, log, attempt, results)
        for output in template.get("outputs", {}).get("parameters", []):
            run.outputs[output["name"]] = _pod_path(output_dir, output["valueFrom"]["path"]).read_text()
            self.values[f"tasks.{name}.outputs.parameters.{output['name']}"] = run.outputs[output["name"]]
        for artifact in template.get("outputs", {}).get("artifacts", []):
            assert artifact.get("archive") == {"none": {}}, f"{artifact['name']}: the UI shows only unarchived files"
            stored = self.workdir / "artifact-repository" / self.values["workflow.name"] / name / artifact["name"]
            stored.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_pod_path(output_dir, artifact["path"]), stored)
            run.artifacts[artifact["name"]] = stored
        metric_scope = {
            **scope,
            "duration": f"{time.monotonic() - started:.3f}",
            **{f"outputs.parameters.{k}": v for k, v in run.outputs.items()},
        }
        for metric in template.get("metrics", {}).get("prometheus", []):
            run.gauges[metric["name"]] = substitute(metric["gauge"]["value"], metric_scope)
            run.gauge_labels[metric["name"]] = {label["key"]: label["value"] for label in metric.get("labels", [])}
        self.runs[name] = run

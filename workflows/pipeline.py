"""The pipeline WorkflowTemplate, built with Hera from the DVC stage graph.

One task per DVC stage (and per item of a foreach/matrix stage), depending exactly on the stages DVC
says it depends on; every task runs the same script (`workflows.task`) in the project image built at
the requested revision. Stage-specific facts (names, edges) come from dvc.yaml through DVC's API.
Lock entries travel between tasks as output parameters, one compact JSON document per line (JSON
never contains a raw newline, and a JSON list of substituted JSON strings would not parse).
"""

from __future__ import annotations

from pathlib import Path

from hera.workflows import DAG, Container, Env, Parameter, RetryStrategy, SecretEnv, WorkflowTemplate
from hera.workflows import models as m

from mlcore.ops.dvc_state import StageNode, stage_graph

NAME = "mlcore-pipeline"
SERVICE_ACCOUNT = "mlcore-workflow"
S3_SECRET = "mlcore-s3"  # keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; see cluster-conf/secrets.yaml
OUTPUT = "/tmp/outputs/lock-entry.json"


def task_name(stage: str) -> str:
    """Argo task names: DNS-like; 'trials@3' becomes 'trials-3'."""
    return stage.replace("@", "-").replace("_", "-").lower()


def _environment() -> list:
    return [
        Env(name="MLCORE_S3_ENDPOINT", value="{{workflow.parameters.s3-endpoint}}"),
        Env(name="MLCORE_S3_BUCKET", value="{{workflow.parameters.s3-bucket}}"),
        Env(name="MLCORE_S3_PREFIX", value="{{workflow.parameters.s3-prefix}}"),
        Env(name="MLCORE_IMAGE", value="{{workflow.parameters.image}}"),
        SecretEnv(name="AWS_ACCESS_KEY_ID", secret_name=S3_SECRET, secret_key="AWS_ACCESS_KEY_ID"),
        SecretEnv(name="AWS_SECRET_ACCESS_KEY", secret_name=S3_SECRET, secret_key="AWS_SECRET_ACCESS_KEY"),
    ]


def _container(name: str, args: list[str], inputs: list[Parameter], output: bool) -> Container:
    return Container(
        name=name,
        image="{{workflow.parameters.image}}",
        command=["python", "-m", "workflows.task"],
        args=args,
        inputs=inputs,
        outputs=[Parameter(name="lock-entry", value_from=m.ValueFrom(path=OUTPUT))] if output else None,
        env=_environment(),
        retry_strategy=RetryStrategy(
            limit=3, retry_policy="OnError", backoff=m.Backoff(duration="30s", factor=2, max_duration="10m")
        ),
        security_context=m.SecurityContext(allow_privilege_escalation=False, run_as_non_root=True),
    )


def build(stages: list[StageNode]) -> WorkflowTemplate:
    with WorkflowTemplate(
        name=NAME,
        entrypoint="pipeline",
        service_account_name=SERVICE_ACCOUNT,
        labels={"app.kubernetes.io/part-of": "mlcore"},
        arguments=[
            Parameter(name="revision", description="git commit or tag the image was built at"),
            Parameter(name="image", description="project image built at that revision (by digest)"),
            Parameter(name="retrain", value="false", enum=["true", "false"]),
            Parameter(name="s3-endpoint", value="", description="empty for AWS S3"),
            Parameter(name="s3-bucket", value="mlcore"),
            Parameter(name="s3-prefix", value="dvcstore"),
        ],
        active_deadline_seconds=6 * 3600,
        pod_gc=m.PodGC(strategy="OnPodCompletion"),
        ttl_strategy=m.TTLStrategy(seconds_after_completion=7 * 24 * 3600),
        security_context=m.PodSecurityContext(run_as_non_root=True, run_as_user=1000, fs_group=1000),
    ) as template:
        stage = _container(
            "dvc-stage",
            ["stage", "{{inputs.parameters.stage}}", "--revision", "{{workflow.parameters.revision}}",
             "--retrain", "{{workflow.parameters.retrain}}", "--upstream", "{{inputs.parameters.upstream}}"],
            [Parameter(name="stage"), Parameter(name="upstream", value="")],
            output=True,
        )  # fmt: skip
        merge = _container(
            "merge-lock",
            ["merge", "--revision", "{{workflow.parameters.revision}}", "{{inputs.parameters.entries}}"],
            [Parameter(name="entries")],
            output=False,
        )
        with DAG(name="pipeline"):
            tasks = {}
            for node in stages:
                upstream = [f"{{{{tasks.{task_name(u)}.outputs.parameters.lock-entry}}}}" for u in node.upstream]
                tasks[node.name] = stage(
                    name=task_name(node.name),
                    arguments={"stage": node.name, "upstream": "\n".join(upstream)},
                )
                for dependency in node.upstream:
                    tasks[dependency] >> tasks[node.name]
            entries = [f"{{{{tasks.{task_name(n.name)}.outputs.parameters.lock-entry}}}}" for n in stages]
            merged = merge(name="merge-lock", arguments={"entries": "\n".join(entries)})
            for node in stages:
                tasks[node.name] >> merged
    return template


def write(out_dir: Path = Path("argo")) -> Path:
    out_dir.mkdir(exist_ok=True)
    path = out_dir / "pipeline.yaml"
    path.write_text("# Generated by `make workflows` from dvc.yaml; do not edit.\n" + build(stage_graph()).to_yaml())
    return path


if __name__ == "__main__":
    print(write())

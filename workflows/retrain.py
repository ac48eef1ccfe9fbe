"""Continuous training on the cluster: the mlcore-retrain WorkflowTemplate and the CronWorkflow that runs it.

A run snapshots the inflow (`workflows.task snapshot`: the listing since the last snapshot any run recorded, and
the model in prod from the registry's tags) and stops there when fewer than params.yaml inflow.min_new_samples
new images arrived. Otherwise it creates a Workflow of mlcore-pipeline with those pins (the controller accepts
only Workflows that reference a WorkflowTemplate) and waits for it: the pipeline's publish task commits the
pins, dvc.lock and provenance, tags the next version and assigns it prod only if the challenger passed the gate
and is not worse than the champion (and deploys it when asked). Runs are serialized by a workflow-level mutex
(cron, Argo Events' sensor in cluster-conf/events and manual submissions alike) and the cron's Forbid policy.

`python -m workflows.retrain REF [--image-digest sha256:...] [--events]` (`make schedule REF=... [EVENTS=1]`)
prints the CronWorkflow for the image built at REF (and Argo Events' Sensor of cluster-conf/events, whose
Workflows need the same build), for `kubectl apply -f -`; argo/retrain-cron.yaml is the same, suspended and
with no image (Argo CD does not sync it), so that nothing starts runs of an unknown build.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from hera.workflows import DAG, CronWorkflow, Parameter, Resource, WorkflowTemplate
from hera.workflows import models as m

from mlcore.params import Params, load_params
from workflows import pods
from workflows.names import NAMESPACE, PIPELINE
from workflows.pipeline import (
    OUTPUTS,
    WORKFLOW_NAME,
    git_token,
    parameter,
    render,
    switch,
    task_container,
    workflow_template,
)
from workflows.submit import SubmitError, image_digest, image_repository, resolve

RETRAIN = "mlcore-retrain"
RETRAIN_ACCOUNT = "mlcore-retrainer"  # may create and watch Workflows (cluster-conf/base/rbac.yaml)
MARGIN_HOURS = 1  # the retrain waits this much longer than its pipeline run may take, and lives this much longer
# What the retrain passes on to its pipeline run unchanged
FORWARDED = (
    "revision",
    "image-digest",
    "s3-endpoint",
    "s3-bucket",
    "s3-prefix",
    "deploy",
    "serving-url",
    "feedback-url",
)


def pipeline_run(workflow: WorkflowTemplate, run: Resource) -> dict:
    """The Workflow of mlcore-pipeline a retrain creates (template `run`): its snapshot's pins and next version,
    promote on, and the retrain's own parameters passed on."""
    arguments = [{"name": name, "value": parameter(workflow, name)} for name in FORWARDED]
    arguments += [
        {"name": "pins", "value": run.get_parameter("pins").value},
        {"name": "release", "value": run.get_parameter("version").value},
        {"name": "git-push", "value": "true"},
        {"name": "promote", "value": "true"},
    ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {  # one name per retrain: a retried apply finds the run it started instead of starting another
            "name": f"{WORKFLOW_NAME}-pipeline",
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "mlcore", "mlcore.dev/retrain": WORKFLOW_NAME},
        },
        "spec": {"workflowTemplateRef": {"name": PIPELINE}, "arguments": {"parameters": arguments}},
    }


def build_retrain(params: Params) -> WorkflowTemplate:
    cluster = params.cluster
    with workflow_template(
        RETRAIN,
        cluster,
        [
            switch("deploy", "deploy the new model when it is promoted"),
            Parameter(name="serving-url", value="", description="see mlcore-pipeline"),
            Parameter(name="feedback-url", value="", description="see mlcore-pipeline"),
        ],
    ) as template:
        template.service_account_name = RETRAIN_ACCOUNT
        template.synchronization = m.Synchronization(mutexes=[m.Mutex(name=RETRAIN)])
        # the mutex is held until the pipeline run ends: the retrain outlives the run's own deadline
        template.active_deadline_seconds = int((cluster.deadline_hours + 2 * MARGIN_HOURS) * 3600)
        snapshot = task_container(
            template,
            "snapshot",
            ["snapshot", "--revision", parameter(template, "revision"), "--git-remote", cluster.git_remote],
            cluster,
            "snapshot",
            env=[git_token()],
            outputs=[
                Parameter(name=name, value_from=m.ValueFrom(path=f"{OUTPUTS}/{name}"))
                for name in ("pins", "proceed", "version")
            ],
        )
        pipeline = Resource(
            name="pipeline",
            action="apply",
            success_condition="status.phase == Succeeded",
            failure_condition="status.phase in (Failed, Error)",
            inputs=[Parameter(name="pins"), Parameter(name="version")],
            timeout=f"{int((cluster.deadline_hours + MARGIN_HOURS) * 3600)}s",
            set_owner_reference=True,  # deleting the retrain deletes its run; a run never outlives its retrain
            retry_strategy=pods.retry_strategy(cluster),
        )
        pipeline.manifest = yaml.safe_dump(pipeline_run(template, pipeline), sort_keys=False)
        with DAG(name="dag"):
            taken = snapshot(name="snapshot")
            ran = pipeline(
                name="pipeline",
                when=f"{taken.get_parameter('proceed').value} == true",
                arguments={name: taken.get_parameter(name).value for name in ("pins", "version")},
            )
            taken >> ran
    return template


def build_parameters(revision: str, image_digest: str) -> list[Parameter]:
    return [Parameter(name="revision", value=revision), Parameter(name="image-digest", value=image_digest)]


def build_cron(params: Params, revision: str = "", image_digest: str = "") -> CronWorkflow:
    """Unless given a build (revision and its image's digest), suspended: it cannot run without one."""
    arguments = build_parameters(revision, image_digest)
    return CronWorkflow(
        name=RETRAIN,
        namespace=NAMESPACE,
        labels={"app.kubernetes.io/part-of": "mlcore"},
        schedules=[params.cluster.retrain_schedule],
        timezone="UTC",
        concurrency_policy="Forbid",  # the template's mutex also queues sensor and manual runs
        starting_deadline_seconds=600,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=3,
        cron_suspend=not (revision and image_digest),
        workflow_template_ref=m.WorkflowTemplateRef(name=RETRAIN),
        arguments=arguments,
    )


SENSOR = Path("cluster-conf/events/sensor.yaml")


def sensor_for(build: list[Parameter], sensor_path: Path = SENSOR) -> dict:
    """cluster-conf/events' Sensor with the build's revision and image digest in the Workflow it submits."""
    sensor = yaml.safe_load(sensor_path.read_text())
    for trigger in sensor["spec"]["triggers"]:
        workflow = trigger["template"]["argoWorkflow"]["source"]["resource"]
        workflow["spec"]["arguments"] = {"parameters": [{"name": p.name, "value": p.value} for p in build]}
    return sensor


def generate(params: Params) -> dict[str, str]:
    return {"retrain.yaml": render(build_retrain(params)), "retrain-cron.yaml": render(build_cron(params))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref", help="the commit (or branch, tag) whose image the schedule runs")
    parser.add_argument("--image-digest", help="sha256:... of the image built at REF (default: asked of the registry)")
    parser.add_argument("--events", action="store_true", help=f"also {SENSOR} for that build (Argo Events)")
    arguments = parser.parse_args()
    params = load_params()
    try:
        commit, _ = resolve(arguments.ref)
        digest = arguments.image_digest or image_digest(f"{image_repository(commit)}:{commit}")
    except SubmitError as exc:
        sys.exit(f"error: {exc}")
    print(build_cron(params, commit, digest).to_yaml(), end="")
    if arguments.events:
        print("---")
        print(yaml.safe_dump(sensor_for(build_parameters(commit, digest)), sort_keys=False), end="")


if __name__ == "__main__":
    main()

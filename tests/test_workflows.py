"""The Argo workflow generated from dvc.yaml: fresh, valid, faithful to the DVC graph, and proven by
executing every task's own command locally against a real S3 server (tests/argo_local.py)."""

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mlcore.ops.dvc_state import stage_graph
from mlcore.params import load_params
from mlcore.storage.seaweed import Credentials, LocalS3Server
from tests import argo_schema
from tests.argo_local import WORKFLOW_UID, Fault, run_workflow, task_dependencies
from tests.helpers import (
    REPO_ROOT,
    TINY_OVERRIDES,
    built_image,
    copy_project,
    drop_inflow,
    free_port_block,
    git,
    git_daemon,
    run,
    write_params,
)
from tests.kserve_local import KServeStandIn
from workflows.__main__ import generate
from workflows.pipeline import ClusterConfigError, build_pipeline, task_name

MANIFEST = REPO_ROOT / "argo" / "pipeline.yaml"
MODEL = "models/model.keras"


def test_committed_manifests_are_fresh():
    for name, text in generate(REPO_ROOT).items():
        assert (REPO_ROOT / "argo" / name).read_text() == text, f"argo/{name} is stale: run `make workflows` and commit"


@pytest.mark.parametrize("manifest", sorted((REPO_ROOT / "argo").glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_pass_argo_schema_and_crd_checks(manifest):
    """Against Argo v4.1.2's own JSON schema and CRD, vendored in tests/argo_release/ (runs in any clone)."""
    found = argo_schema.problems(yaml.safe_load(manifest.read_text()))
    assert not found, "\n".join(found)


@pytest.mark.parametrize(("manifest", "final"), [("pipeline.yaml", "publication"), ("reproduce.yaml", "verify")])
def test_dag_has_one_task_per_stage_with_dvc_dependencies(manifest, final):
    spec = yaml.safe_load((REPO_ROOT / "argo" / manifest).read_text())["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    dag = templates[spec["entrypoint"]]["dag"]["tasks"]
    edges = {t["name"]: sorted(task_dependencies(t)) for t in dag}
    expected = {task_name(n.name): sorted(task_name(u) for u in n.upstream) for n in stage_graph(REPO_ROOT)}
    assert {k: v for k, v in edges.items() if k != final} == expected
    assert edges[final] == sorted(expected)
    if final == "publication":  # publish, then deploy the release, then ask the server: under one mutex
        publication = templates["publication"]
        inner = {t["name"]: sorted(task_dependencies(t)) for t in publication["dag"]["tasks"]}
        assert inner == {"publish": [], "deploy": ["publish"], "serving-check": ["deploy"]}
        assert publication["synchronization"]["mutexes"] == [{"name": "mlcore-release"}]
    text = (REPO_ROOT / "argo" / manifest).read_text()
    assert "secretKeyRef" in text and "AWS_SECRET_ACCESS_KEY" in text
    assert "runAsNonRoot: true" in text and "allowPrivilegeEscalation: false" in text


def test_every_trial_is_a_parallel_task_and_each_rung_waits_for_the_one_before():
    tune = load_params(REPO_ROOT / "params.yaml").tune
    spec = yaml.safe_load(MANIFEST.read_text())["spec"]
    dag = next(t for t in spec["templates"] if t["name"] == spec["entrypoint"])["dag"]["tasks"]
    edges = {t["name"]: task_dependencies(t) for t in dag}
    rungs = [sorted(name for name in edges if name.startswith(f"rung{r}-")) for r in range(len(tune.rungs))]
    assert [len(tasks) for tasks in rungs] == [len(rung.slots) for rung in tune.rungs]
    for task in rungs[0]:
        assert edges[task] == {"plan", "prepare"}  # all of rung 0 can start at once
    for task in rungs[1]:
        assert edges[task] == {"plan", "prepare", *rungs[0]}
    assert edges["select"] == set(rungs[0]) | set(rungs[1]) and "select" in edges["train"]


def test_one_template_per_dvc_yaml_stage_whose_items_pass_their_stage_and_matrix_values():
    spec = yaml.safe_load(MANIFEST.read_text())["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    tasks = {t["name"]: t for t in templates[spec["entrypoint"]]["dag"]["tasks"]}
    nodes = stage_graph(REPO_ROOT)
    stage_templates = {task_name(n.base) for n in nodes}
    assert set(templates) == stage_templates | {"dag", "publication", "publish", "deploy", "serving-check"}
    for node in nodes:
        task = tasks[task_name(node.name)]
        assert task["template"] == task_name(node.base)
        passed = {p["name"]: p["value"] for p in task["arguments"]["parameters"]}
        assert passed == {"stage": node.name, **dict(node.item)}
    rung = templates["rung0"]
    assert {p["name"] for p in rung["inputs"]["parameters"]} == {"stage", "slot"}
    (report,) = [a for a in rung["outputs"]["artifacts"] if a["name"] != "lock-entry"]
    assert report["path"].endswith("/tuning/rung0/slot{{inputs.parameters.slot}}.json")


def test_pods_get_the_resources_and_limits_params_yaml_gives_their_stage():
    cluster = load_params(REPO_ROOT / "params.yaml").cluster
    spec = yaml.safe_load(MANIFEST.read_text())["spec"]
    assert spec["parallelism"] == cluster.parallelism
    for template in spec["templates"]:
        if "container" not in template:
            continue
        wanted = cluster.resources.get(template["name"], cluster.resources["default"])
        resources = template["container"]["resources"]
        assert (
            resources["requests"]
            == resources["limits"]
            == {
                "cpu": wanted.cpu,
                "memory": wanted.memory,
                "ephemeral-storage": wanted.ephemeral_storage,
            }
        )
        assert template["retryStrategy"]["limit"] == cluster.retries


def cache_objects(clone: Path) -> set[str]:
    root = clone / ".dvc" / "cache" / "files" / "md5"
    return {p.parent.name + p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def output_objects(project: Path, md5: str) -> set[str]:
    objects = {md5}
    if md5.endswith(".dir"):
        listing = project / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
        objects |= {entry["md5"] for entry in json.loads(listing.read_text())}
    return objects


def checkpoint_uploaded(server: LocalS3Server, credentials: Credentials) -> Callable[[], bool]:
    client = server.client(credentials)

    def uploaded() -> bool:
        listing = client.list_objects_v2(Bucket="mlcore", Prefix="checkpoints/")
        return any(item["Key"].endswith("state.json") for item in listing.get("Contents", []))

    return uploaded


@pytest.mark.slow
def test_workflows_run_locally_publish_the_lock_and_reproduce_the_tag(tmp_path, request):
    """The pipeline DAG, task by task in containers of the project image as the pods would run (uid 1000,
    read-only root, only the pod's volumes writable) against real S3 (its training pod OOM-killed after the
    first checkpoint and retried, as the retry rule allows), merges to the local dvc.repro lock byte for byte,
    shows its reports and metrics, pushes lock and tag to git, deploys the release (a KServe stand-in runs the
    InferenceService's own container) and checks that it serves the released commit; the reproduce DAG then
    replays that tag with the image of the run's commit, into a scratch prefix, and verifies every hash."""
    project = copy_project(tmp_path / "project")
    git_port = free_port_block(1)
    remote = f"git://127.0.0.1:{git_port}/origin.git"  # params.yaml cluster.git_remote: fixed in the templates
    write_params(project, {**TINY_OVERRIDES, "cluster": {"git_remote": remote}})
    run(project, "python", "-m", "workflows")  # `make workflows`: the tiny search has fewer trials
    git(project, "commit", "-qam", "tiny configuration")
    revision = git(project, "rev-parse", "HEAD").strip()
    repositories = tmp_path / "git"
    origin = repositories / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(project), str(origin))

    credentials = Credentials("workflowkey", "workflowsecret0123456789")
    server = LocalS3Server(tmp_path / "s3", port=free_port_block(), bucket="mlcore")
    server.start(credentials)
    keys = {"AWS_ACCESS_KEY_ID": credentials.access_key, "AWS_SECRET_ACCESS_KEY": credentials.secret_key}
    secrets = {"mlcore-s3": keys, "mlcore-serving-s3": keys, "mlcore-git": {"token": "not-sent-over-git-protocol"}}
    client = server.client(credentials)
    with built_image(project) as digest, git_daemon(repositories, git_port):
        image = f"{load_params(project / 'params.yaml').cluster.image_repository}@{digest}"
        kserve = KServeStandIn(tmp_path / "kserve", client, secrets, {image: f"mlcore:{revision}"})
        try:
            runs = run_workflow(
                project / "argo" / "pipeline.yaml",
                tmp_path / "pods",
                {
                    "revision": revision,
                    "image-digest": digest,
                    "s3-endpoint": server.endpoint,
                    "git-push": "true",
                    "release": "v0.1.0",
                    "promote": "true",
                    "deploy": "true",
                    "serving-url": f"{kserve.url}/v2/models/pet-segmenter",
                },
                secrets,
                faults={"train": Fault("oom", checkpoint_uploaded(server, credentials))},
                on_apply=kserve.apply,
            )
            leftover_checkpoints = client.list_objects_v2(Bucket="mlcore", Prefix="checkpoints/")
            storage_uri = runs["publish"].outputs["storage-uri"]
            listing = client.list_objects_v2(Bucket="mlcore", Prefix=storage_uri.removeprefix("s3://mlcore/") + "/")
            served_files = {
                item["Key"].removeprefix(storage_uri.removeprefix("s3://mlcore/") + "/")
                for item in listing.get("Contents", [])
            }

            def store() -> set[str]:
                pages = client.get_paginator("list_objects_v2").paginate(Bucket="mlcore", Prefix="dvcstore/")
                return {item["Key"] for page in pages for item in page.get("Contents", [])}

            store_before_replay = store()
            # the tag's commit (dvc.lock and provenance on top of `revision`) has no image: replay it with the image
            # of the commit its code is, as `make submit REF=model@v0.1.0 REPRODUCE=1` does
            reproduced = run_workflow(
                project / "argo" / "reproduce.yaml",
                tmp_path / "replay-pods",
                {
                    "revision": revision,
                    "tag": "model@v0.1.0",
                    "image-digest": digest,
                    "s3-endpoint": server.endpoint,
                    "cpu-vendor_id": "AMD",
                    "cpu-family": "25",
                    "cpu-id": "17",
                },
                secrets,
            )
            replay_objects = client.list_objects_v2(Bucket="mlcore", Prefix="replays/local-run/").get("KeyCount", 0)
            store_after_replay = store()
            build = {"revision": revision, "image-digest": digest, "s3-endpoint": server.endpoint}
            retrains = run_retrains(project, tmp_path, client, secrets, kserve, build)
        finally:
            kserve.stop()
            server.stop()

    # `dvc repro` of the same code and stage params (cluster.* is read by no stage), made outside any pod: the
    # run's shared tiny project, asked for only now so that another worker can build it meanwhile
    local = request.getfixturevalue("tiny_release").project
    local_lock = (local / "dvc.lock").read_bytes()
    local_metrics = json.loads((local / "metrics" / "evaluate.json").read_text())
    assert (runs["publish"].clone / "dvc.lock").read_bytes() == local_lock
    assert runs["publish"].artifacts["dvc-lock"].read_bytes() == local_lock
    published = git(origin, "show", "mlcore/runs/local-run:dvc.lock").encode()
    assert published == local_lock
    assert git(origin, "rev-parse", "model@v0.1.0^{commit}") == git(origin, "rev-parse", "mlcore/runs/local-run")
    provenance = json.loads(git(origin, "show", "model@v0.1.0:models/provenance.json"))
    assert provenance["source"]["commit"] == revision and provenance["environment"]["container_image"] == image
    model_md5 = next(o["md5"] for o in yaml.safe_load(local_lock)["stages"]["train"]["outs"] if o["path"] == MODEL)
    assert runs["publish"].outputs["model-md5"] == model_md5

    release_md5 = next(o["md5"] for o in yaml.safe_load(local_lock)["stages"]["release"]["outs"])
    assert storage_uri == f"s3://mlcore/serving/pet-segmenter/{release_md5.removesuffix('.dir')}"
    assert {"release.json", "MODEL_CARD.md", "saved_model/saved_model.pb", "provenance.json"} <= served_files
    assert f"serves the model of commit {revision}" in runs["serving-check"].log  # the deployed server, asked
    service = runs["deploy"].applied  # the InferenceService the deploy task applies, only after the gate passed
    (predictor,) = service["spec"]["predictor"]["containers"]
    assert service["kind"] == "InferenceService" and predictor["image"] == image
    assert {"name": "STORAGE_URI", "value": storage_uri} in predictor["env"]
    assert service["metadata"]["labels"]["mlcore.dev/commit"] == revision
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": {"containers": [predictor]}},
        "1.33",
        strict=True,
    )

    train = runs["train"]
    assert train.attempts == 2, "the training pod was not interrupted"
    assert train.results[0].status == "Failed" and train.results[0].exit_code == "137"  # as Argo records OOM
    assert f"fetching checkpoints from s3://mlcore/checkpoints/{WORKFLOW_UID}/train/" in train.log  # this run's own
    assert "resuming from the checkpoint of epoch" in train.log
    assert "Contents" not in leftover_checkpoints, "a finished training must delete its S3 checkpoints"

    evaluate = runs["evaluate"]
    assert float(evaluate.outputs["calibrated-mean-iou"]) == local_metrics["calibrated"]["mean_iou"]
    assert (
        float(evaluate.gauges["mlcore_calibrated_per_class_pet_iou"])
        == (local_metrics["calibrated"]["per_class"]["pet"]["iou"])
    )
    assert float(evaluate.gauges["mlcore_stage_duration_seconds"]) > 0
    assert evaluate.gauge_labels["mlcore_stage_duration_seconds"] == {"stage": "evaluate", "revision": revision}
    trial = runs["rung0-1"]  # a matrix item: the rung's one template, placed by the item it passes
    assert trial.gauge_labels["mlcore_stage_duration_seconds"]["stage"] == "rung0@1"
    assert trial.artifacts["tuning-rung0-slot-json"].read_bytes() == (local / "tuning/rung0/slot1.json").read_bytes()
    assert evaluate.artifacts["plots-evaluate-predictions-png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert evaluate.artifacts["metrics-evaluate-json"].read_bytes() == (local / "metrics/evaluate.json").read_bytes()
    robust = json.loads((local / "metrics/robustness.json").read_text())["strongest"]["calibrated"]["mean_iou"]
    assert float(runs["robustness"].outputs["strongest-calibrated-mean-iou"]) == robust  # shown in the Argo UI

    assert "reproduced byte for byte" in reproduced["verify"].log
    assert all(reproduced[task_name(stage)].log for stage in ("prepare", "train", "evaluate"))
    assert "Running stage 'train'" in reproduced["train"].log  # recomputed, not restored
    assert replay_objects > 0, "a replay writes its recomputed outputs under replays/<workflow>"
    assert store_after_replay == store_before_replay, "a replay must not write into the production store"

    idle, active, pipeline_runs = retrains
    assert idle["pipeline"].skipped and "0 new image(s)" in idle["snapshot"].log  # nothing arrived: no run
    assert list(pipeline_runs) == ["retrain-active-pipeline"]
    pins = json.loads(active["snapshot"].outputs["pins"])
    assert active["snapshot"].outputs["version"] == "v0.2.0" and pins["champion"]["version"] == "v0.1.0"
    assert pins["inflow"]["objects"] == 2 * 12 + 1  # 12 samples and a corrupt image
    child = pipeline_runs["retrain-active-pipeline"]
    assert "Running stage 'train'" in child["train"].log and "Running stage 'inflow'" in child["inflow"].log
    assert "promote: " in child["publish"].log and child["deploy"].skipped  # deploy was not asked for
    tagged = yaml.safe_load(git(origin, "show", "model@v0.2.0:pins.yaml"))
    assert tagged == pins  # the snapshot the run took, committed with its dvc.lock
    assert git(origin, "tag", "--points-at", "model@v0.1.0^{commit}", "model#prod#*").split() == ["model#prod#1"]
    prod = git(origin, "tag", "--points-at", "model@v0.2.0^{commit}", "model#prod#*").split()
    assert prod == ["model#prod#2"], "the challenger was not assigned prod"
    snapshot = json.loads(git(origin, "show", "model@v0.2.0:models/provenance.json"))["pins"]
    assert snapshot == pins

    lock = yaml.safe_load(local_lock)["stages"]
    produced = {out["path"]: out["md5"] for entry in lock.values() for out in entry.get("outs", [])}
    for stage, entry in lock.items():
        own = set().union(*(output_objects(local, out["md5"]) for out in entry["outs"]))
        needed = set()
        for dep in entry["deps"]:
            for path, md5 in produced.items():
                if path == dep["path"] or path.startswith(f"{dep['path']}/"):  # an output, or one inside a folder
                    needed |= output_objects(local, md5)
                elif dep["path"].startswith(f"{path}/"):  # one file of an output folder, and that folder's listing
                    needed |= {dep["md5"], md5}
        fetched = cache_objects(runs[task_name(stage)].clone)
        assert fetched <= own | needed, f"task {stage} downloaded objects it does not depend on"
        assert needed <= fetched, f"task {stage} lacks one of its dependencies"


def run_retrains(project: Path, tmp_path: Path, client, secrets: dict, kserve: KServeStandIn, parameters: dict):
    """The CronWorkflow's runs of mlcore-retrain as its controller submits them: once with nothing new in the
    inflow, once after a drop of samples. The Workflow a run applies is run here too, as Argo's controller would
    run it; its failure makes the run's resource step fail (failureCondition)."""
    cron = yaml.safe_load((project / "argo" / "retrain-cron.yaml").read_text())["spec"]
    assert cron["workflowSpec"]["workflowTemplateRef"] == {"name": "mlcore-retrain"}
    assert cron["concurrencyPolicy"] == "Forbid" and cron["suspend"] is True  # no build named: it cannot run
    pipeline_runs = {}

    def controller(resource: dict) -> None:
        if resource["kind"] != "Workflow":
            kserve.apply(resource)
            return
        assert resource["spec"]["workflowTemplateRef"] == {"name": "mlcore-pipeline"}
        name = resource["metadata"]["name"]
        arguments = {p["name"]: p["value"] for p in resource["spec"]["arguments"]["parameters"]}
        pipeline_runs[name] = run_workflow(
            project / "argo" / "pipeline.yaml", tmp_path / name, arguments, secrets, on_apply=kserve.apply, name=name
        )

    def retrain(name: str) -> dict:
        return run_workflow(
            project / "argo" / "retrain.yaml", tmp_path / name, parameters, secrets, on_apply=controller, name=name
        )

    idle = retrain("retrain-idle")
    drop_inflow(client, "mlcore", "inflow", 12, seed=77)
    client.put_object(Bucket="mlcore", Key="inflow/images/broken_1.jpg", Body=b"not a JPEG")
    time.sleep(1.1)  # S3 times have whole seconds, and inflow.settle_s is 0 here: let the last upload settle
    return idle, retrain("retrain-active"), pipeline_runs


def test_verify_task_names_the_first_diverging_stage(tmp_path):
    project = copy_project(tmp_path / "project", skip_outputs=False)
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    lock["calibrate"]["outs"][0]["md5"] = "0" * 32
    lock["evaluate"]["outs"][0]["md5"] = "1" * 32
    inputs = tmp_path / "inputs"  # as Argo places the input artifacts: one entry per stage
    (inputs / "entries").mkdir(parents=True)
    for stage, entry in lock.items():
        (inputs / "entries" / f"{task_name(stage)}.json").write_text(json.dumps({stage: entry}))
    result = run(
        project,
        "python",
        "-m",
        "workflows.task",
        "verify",
        "--revision",
        "HEAD",
        env={"MLCORE_INPUTS_DIR": str(inputs)},
        check=False,
    )
    assert result.returncode != 0
    assert "first divergence in stage 'calibrate' (metrics/calibrate.json)" in result.stderr
    assert "NO" in result.stdout


def test_cluster_settings_naming_an_unknown_stage_are_refused():
    params = load_params(REPO_ROOT / "params.yaml")
    cluster = params.cluster
    misspelled = cluster.revised(resources={**cluster.resources, "trian": cluster.resources["default"]})
    with pytest.raises(ClusterConfigError, match=r"cluster.resources.trian: dvc.yaml has no stage 'trian'"):
        build_pipeline(stage_graph(REPO_ROOT), params.revised(cluster=misspelled))


def test_the_retrain_schedule_renders_for_a_build_and_otherwise_stays_suspended():
    """`make schedule REF=...`: the CronWorkflow runs mlcore-retrain with that build's revision and image digest;
    the committed one (no build) is suspended. Both pass Argo's schema and CRD."""
    from workflows.retrain import RETRAIN, build_cron

    params = load_params(REPO_ROOT / "params.yaml")
    committed = yaml.safe_load((REPO_ROOT / "argo" / "retrain-cron.yaml").read_text())
    rendered = yaml.safe_load(build_cron(params, "a" * 40, "sha256:" + "b" * 64).to_yaml())
    for cron in (committed, rendered):
        assert not argo_schema.problems(cron)
        assert cron["spec"]["workflowSpec"]["workflowTemplateRef"] == {"name": RETRAIN}
        assert cron["spec"]["schedules"] == [params.cluster.retrain_schedule] and cron["spec"]["timezone"] == "UTC"
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert committed["spec"]["suspend"] is True and rendered["spec"]["suspend"] is False
    arguments = {p["name"]: p["value"] for p in rendered["spec"]["workflowSpec"]["arguments"]["parameters"]}
    assert arguments == {"revision": "a" * 40, "image-digest": "sha256:" + "b" * 64}
    template = yaml.safe_load((REPO_ROOT / "argo" / "retrain.yaml").read_text())["spec"]
    assert template["synchronization"] == {"mutexes": [{"name": RETRAIN}]}  # cron, sensor and manual runs queue
    (pipeline,) = [t for t in template["templates"] if t["name"] == "pipeline"]
    child = yaml.safe_load(pipeline["resource"]["manifest"])
    assert pipeline["resource"]["action"] == "apply" and child["metadata"]["name"] == "{{workflow.name}}-pipeline"
    assert child["spec"]["workflowTemplateRef"] == {"name": "mlcore-pipeline"}  # the controller's Strict rule
    pipeline_parameters = {p["name"] for p in yaml.safe_load(MANIFEST.read_text())["spec"]["arguments"]["parameters"]}
    assert {p["name"] for p in child["spec"]["arguments"]["parameters"]} <= pipeline_parameters
    required = {p["name"] for p in template["arguments"]["parameters"] if "value" not in p}
    assert required == set(arguments), "a run of the schedule must set every parameter without a default"


def test_the_sensor_submits_retrains_of_the_scheduled_build():
    """Argo's server refuses a Workflow that leaves a parameter without a value: the sensor gets the build's."""
    from workflows.retrain import build_parameters, sensor_for

    sensor = sensor_for(build_parameters("a" * 40, "sha256:" + "b" * 64), REPO_ROOT / "cluster-conf/events/sensor.yaml")
    (trigger,) = sensor["spec"]["triggers"]
    workflow = trigger["template"]["argoWorkflow"]["source"]["resource"]
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "mlcore-retrain"}
    assert {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]} == {
        "revision": "a" * 40,
        "image-digest": "sha256:" + "b" * 64,
    }


def test_items_of_one_stage_that_one_template_cannot_serve_are_refused():
    """Items that depend on different stages (a foreach over unlike things) would need templates of their own."""
    params = load_params(REPO_ROOT / "params.yaml")
    stages = stage_graph(REPO_ROOT)
    unlike = [replace(n, upstream=("plan",)) if n.name == "rung0@1" else n for n in stages]
    with pytest.raises(ClusterConfigError, match=r"dvc.yaml stage rung0: its items depend on different stages"):
        build_pipeline(unlike, params)

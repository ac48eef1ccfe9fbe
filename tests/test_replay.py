"""A git tag names a model: release it, then replay it in a fresh clone and compare every hash."""

import base64
import io
import json
import os
import subprocess
import time

import pytest
import yaml

from mlcore.hardware import class_id
from mlcore.ops.dvc_state import default_remote
from tests.helpers import VENV_BIN, free_port_block, git, run
from tests.shared_pipeline import ReleasedPipeline

pytestmark = pytest.mark.slow  # trains, serves or moves real data: `make test-fast` skips it


@pytest.fixture(scope="module")
def released(tiny_release: ReleasedPipeline, tmp_path_factory):
    """A copy of the test run's tiny released project (`make run`, then `make release VERSION=v0.1.0 STAGE=prod`),
    with its S3 server running."""
    root, env = tiny_release.copy(tmp_path_factory.mktemp("replay") / "project")

    def sh(*command, check=True):
        return run(root, *command, check=check, env=env)

    sh("python", "-m", "mlcore.ops.remote", "up")
    try:
        yield root, sh, env
    finally:
        sh("python", "-m", "mlcore.ops.remote", "down")


def test_provenance_names_commit_params_and_every_hash(released):
    root, sh, _ = released
    (root / "params.yaml").write_text((root / "params.yaml").read_text() + "\n")  # an unstaged edit
    refused = sh("python", "-m", "mlcore.stages", "provenance", check=False)
    git(root, "checkout", "params.yaml")
    assert refused.returncode != 0 and "uncommitted changes to params.yaml" in refused.stderr
    record = json.loads((root / "models/provenance.json").read_text())
    lock_text = (root / "dvc.lock").read_text()
    assert record["source"]["dirty"] is False and len(record["source"]["commit"]) == 40
    assert record["stages"]["train"]["outs"]["models/model.keras"] in lock_text
    defined = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    plain = {name for name, spec in defined.items() if "matrix" not in spec}
    assert set(record["stages"]) == plain | {"rung0@0", "rung0@1", "rung1@0"}  # TINY_OVERRIDES: 2 trials, then 1
    assert record["tuning"] == json.loads((root / "tuning/best.json").read_text())  # the configuration it used
    assert record["pins"]["inflow"] == {"cutoff": None, "objects": 0, "listing_sha256": None}  # nothing pinned
    assert set(record["pins"]["champion"].values()) == {None}
    environment = record["environment"]
    assert environment["intra_op_threads"] == 2 and environment["onednn_opts"] is False
    assert environment["max_cpu_isa"] == "avx2" and environment["hardware"]["kernel_isa_cap"] == "AVX2"
    assert environment["hardware_class"] == class_id(environment["hardware"])
    assert environment["tensorflow"] and environment["uv_lock_sha256"] and environment["cpu_flags"]


def test_release_creates_gto_tags(released):
    root, _, _ = released
    tags = git(root, "tag").split()
    assert "model@v0.1.0" in tags and any(tag.startswith("model#prod") for tag in tags)


def test_replay_from_run_cache_matches_every_hash(released):
    _, sh, _ = released
    result = sh("python", "-m", "mlcore.ops.replay", "model@v0.1.0")
    assert "reproduced byte for byte" in result.stdout and " NO\n" not in result.stdout


def test_replay_with_retrain_matches_every_hash(released):
    """Every stage but the pinned inputs (fetch, inflow, champion) recomputed in a fresh clone, the search
    included, gives the tag's bytes."""
    root, sh, _ = released
    result = sh("python", "-m", "mlcore.ops.replay", "model@v0.1.0", "--retrain")
    assert "reproduced byte for byte" in result.stdout and " NO\n" not in result.stdout
    recomputed = next(line for line in result.stdout.splitlines() if line.startswith("recomputed "))
    stages = set(recomputed.split(": ", 1)[1].split(", "))
    pinned = {"fetch", "inflow", "champion"}  # restored as the tag recorded them (dvc.yaml meta.pinned_input)
    assert stages == set(yaml.safe_load((root / "dvc.lock").read_text())["stages"]) - pinned


def test_restore_refuses_a_tag_whose_lock_does_not_match_its_code(released):
    root, sh, _ = released
    evaluate = root / "mlcore/stages/evaluate.py"
    evaluate.write_text(evaluate.read_text() + "\n# a code change committed without re-running the pipeline\n")
    git(root, "commit", "-qam", "stale lock")
    git(root, "tag", "stale-lock")
    git(root, "checkout", "-q", "HEAD~1", "--", "mlcore/stages/evaluate.py")
    git(root, "commit", "-qam", "revert")
    result = sh("python", "-m", "mlcore.ops.replay", "stale-lock", check=False)
    assert result.returncode != 0
    assert "stage(s) evaluate had to be recomputed" in result.stderr


def test_retrain_on_another_hardware_class_passes_within_the_metric_tolerance(released, tmp_path):
    """A tag recorded on another hardware class whose bits do not reproduce here: the retrain names the first
    stage that diverged, says bit-identity is not expected there, compares the test metrics it recomputed with
    the tag's own, and exits with EQUIVALENT (3). (On the tag's own class a divergence is a bug, exit 1:
    tests/test_hardware_probe.py.)"""
    root, sh, _ = released
    worktree = tmp_path / "other-hardware"
    git(root, "worktree", "add", "-q", "--detach", str(worktree), "model@v0.1.0")
    provenance = json.loads((worktree / "models/provenance.json").read_text())
    provenance["environment"]["hardware"]["cpu"].update(vendor="GenuineIntel", family="6", model_id="9999")
    (worktree / "models/provenance.json").write_text(json.dumps(provenance))
    lock = (worktree / "dvc.lock").read_text()
    model_md5 = provenance["stages"]["train"]["outs"]["models/model.keras"]
    (worktree / "dvc.lock").write_text(lock.replace(model_md5, "f" * 32))  # the bits that machine got
    git(worktree, "commit", "-qam", "a model trained on an Intel machine")
    git(worktree, "tag", "trained-elsewhere")
    git(root, "worktree", "remove", "--force", str(worktree))
    result = sh("python", "-m", "mlcore.ops.replay", "trained-elsewhere", "--retrain", check=False)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "first divergence in stage 'train'" in result.stderr
    rows = {line.split()[1]: line.split()[-1] for line in result.stdout.splitlines() if line.count(" ") > 3}
    assert rows["data/prepared"] == "yes" and rows["models/model.keras"] == "NO"
    assert "other hardware: bit-identity is not expected" in result.stdout
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("calibrated.mean_iou ")]
    assert line.split()[-1] == "yes" and "EQUIVALENT on other hardware" in result.stdout


def test_make_serve_answers_a_v2_client_like_the_evaluate_stage(released):
    """`make serve REF=model@v0.1.0 FEEDBACK=1`: the released SavedModel, pulled from the remote into a fresh
    clone, segments a test image exactly as the evaluate stage does (same mask, same pixel accuracy); feedback
    lands in the DVC remote's bucket, behind the token generated into a private file."""
    import numpy as np
    import requests

    from mlcore.calibration import apply_calibrator
    from mlcore.data.tfrecords import load_split_arrays
    from mlcore.model.serialize import load_model

    root, _, fixture_env = released
    port = free_port_block()
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **fixture_env}
    command = ["python", "-m", "mlcore.ops.serve", "model@v0.1.0", "--port", str(port), "--feedback"]
    server = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/v2"
        deadline = time.monotonic() + 180
        while not _ready(url):
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.3)
        metadata = requests.get(f"{url}/models/pet-segmenter", timeout=10).json()
        assert metadata["versions"] == ["model@v0.1.0"]
        provenance = json.loads(git(root, "show", "model@v0.1.0:models/provenance.json"))
        assert metadata["parameters"]["git_commit"] == provenance["source"]["commit"]  # the code that trained it
        _, images, labels = load_split_arrays(root / "data/prepared", "test")
        image = images[:1].astype(np.uint8)
        body = {
            "inputs": [
                {"name": "image", "shape": list(image.shape), "datatype": "UINT8", "data": image.ravel().tolist()}
            ],
            "outputs": [{"name": "mask"}],
        }
        (mask,) = requests.post(f"{url}/models/pet-segmenter/infer", json=body, timeout=60).json()["outputs"]
        token_file = root / ".cache" / "feedback-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        sample = {
            key: base64.b64encode(_png(array)).decode()
            for key, array in (("image", image[0]), ("mask", (labels[0] + 1).astype(np.uint8)))
        }
        answer = requests.post(
            f"{url}/models/pet-segmenter/feedback",
            json=sample,
            timeout=60,
            headers={"authorization": f"Bearer {token_file.read_text().strip()}"},
        )
        assert answer.status_code == 201, answer.text
        remote = default_remote(root)
        stored = remote.client().list_objects_v2(Bucket=remote.bucket, Prefix="feedback/images/")["Contents"]
        assert [item["Key"] for item in stored] == [f"feedback/images/{answer.json()['sample']}.jpg"]
    finally:
        server.kill()
        server.wait()
    served = np.array(mask["data"]).reshape(mask["shape"])[0]
    calibrator = json.loads((root / "models/calibrator.json").read_text())
    probabilities = load_model(root / "models/model.keras").predict(images[:1], verbose=0)
    evaluated = apply_calibrator(calibrator, np.asarray(probabilities)).argmax(axis=-1)[0]
    assert np.array_equal(served, evaluated)
    assert (served == labels[0]).mean() == (evaluated == labels[0]).mean()


def _png(array) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _ready(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/health/ready", timeout=1).ok
    except requests.ConnectionError:
        return False


def test_inference_service_of_a_release_tag_is_valid(released):
    import kubernetes_validate
    import yaml

    root, sh, _ = released
    service = yaml.safe_load(
        sh("python", "-m", "workflows.serving", "model@v0.1.0", "--image-repo", "reg/mlcore").stdout
    )
    commit = git(root, "rev-parse", "model@v0.1.0^{commit}").strip()
    lock = yaml.safe_load(git(root, "show", "model@v0.1.0:dvc.lock"))["stages"]
    release_md5 = lock["release"]["outs"][0]["md5"].removesuffix(".dir")
    (predictor,) = service["spec"]["predictor"]["containers"]
    assert predictor["image"] == f"reg/mlcore:{commit}"
    assert {"name": "STORAGE_URI", "value": f"s3://mlcore/serving/pet-segmenter/{release_md5}"} in predictor["env"]
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": {"containers": [predictor]}},
        "1.33",
        strict=True,
    )

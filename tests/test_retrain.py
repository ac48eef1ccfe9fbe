"""Continuous training end to end on loopback: a released model is served with feedback on, users send
corrected masks (one of them bad), files are dropped into the inflow prefix (some bad, one twice), and
`make retrain` ingests them, trains a challenger, compares it with the model in prod and promotes it; a second
`make retrain` with nothing new does nothing; the resulting tag replays to the same snapshot and hashes even
with the bucket's inflow gone; `make rollback` gives prod back."""

import base64
import json
import os
import subprocess
import time

import pytest
import requests
import yaml

from mlcore.ops.dvc_state import default_remote
from tests.helpers import VENV_BIN, drop_inflow, free_port_block, git, run, sample_pairs
from tests.shared_pipeline import ReleasedPipeline

pytestmark = pytest.mark.slow  # trains, serves and moves real data: `make test-fast` skips it


def _served(root, env, port):
    """`make serve REF=model@v0.1.0 FEEDBACK=1`, ready."""
    command = ["python", "-m", "mlcore.ops.serve", "model@v0.1.0", "--port", str(port), "--feedback"]
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **env}
    server = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).ok:
                return server
        except requests.ConnectionError:
            pass
        assert server.poll() is None, server.stdout.read()
        assert time.monotonic() < deadline, "the server did not get ready"
        time.sleep(0.3)


def _send_traffic_and_feedback(url: str, token: str) -> tuple[int, int]:
    """Segment each sample's image, then send its corrected trimap; returns (stored, refused) feedback counts."""
    stored = refused = 0
    auth = {"authorization": f"Bearer {token}"}
    for _, image, trimap in sample_pairs(5, seed=3):
        body = {
            "inputs": [
                {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(image).decode()]}
            ]
        }
        assert requests.post(f"{url}/infer", json=body, timeout=60).status_code == 200
        sample = {"image": base64.b64encode(image).decode(), "mask": base64.b64encode(trimap).decode()}
        stored += requests.post(f"{url}/feedback", json=sample, headers=auth, timeout=60).status_code == 201
    _, image, _ = sample_pairs(1, seed=4)[0]
    bad = {"image": base64.b64encode(image).decode(), "mask": base64.b64encode(b"not a PNG").decode()}
    refused += requests.post(f"{url}/feedback", json=bad, headers=auth, timeout=60).status_code == 415
    return stored, refused


def _drop_files(client, bucket: str) -> None:
    """Three good samples, one of them also under a second name, and three bad objects."""
    keys = drop_inflow(client, bucket, "inflow", 3, seed=91)
    first = client.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    trimap = client.get_object(
        Bucket=bucket, Key=keys[0].replace("images/", "annotations/trimaps/").replace(".jpg", ".png")
    )["Body"].read()
    client.put_object(Bucket=bucket, Key="inflow/annotations/trimaps/again_1.png", Body=trimap)
    client.put_object(Bucket=bucket, Key="inflow/images/again_1.jpg", Body=first)
    client.put_object(Bucket=bucket, Key="inflow/images/broken_1.jpg", Body=b"not a JPEG")  # and no trimap
    client.put_object(Bucket=bucket, Key="inflow/annotations/trimaps/orphan_1.png", Body=trimap)
    _, image, _ = sample_pairs(1, seed=5)[0]
    client.put_object(Bucket=bucket, Key="inflow/images/nomask_1.jpg", Body=image)


def test_retrain_loop_ingests_promotes_replays_and_rolls_back(tiny_release: ReleasedPipeline, tmp_path):
    root, env = tiny_release.copy(tmp_path / "project")

    def sh(*command, check=True):
        return run(root, *command, check=check, env=env)

    sh("python", "-m", "mlcore.ops.remote", "up")
    try:
        remote = default_remote(root)
        client = remote.client()
        port = free_port_block(1)
        server = _served(root, env, port)
        try:
            url = f"http://127.0.0.1:{port}/v2/models/pet-segmenter"
            stored, refused = _send_traffic_and_feedback(url, (root / ".cache/feedback-token").read_text().strip())
            _drop_files(client, remote.bucket)
            head = git(root, "rev-parse", "HEAD").strip()
            time.sleep(1.1)  # S3 times have whole seconds, and inflow.settle_s is 0 here: let the last upload settle
            first = sh("python", "-m", "mlcore.ops.retrain", "--drift", f"http://127.0.0.1:{port}/metrics").stdout
        finally:
            server.kill()
            server.wait()
        print(first)
        assert (stored, refused) == (5, 1)
        summary = {line.split()[0]: line for line in first.splitlines() if line.startswith("  ") and line.split()}
        # 5 feedback + 3 dropped images + a second name of one + 2 bad images (the orphan trimap is an object too)
        assert "11 new image(s) since the first snapshot" in summary["inflow"]
        assert "taken 8, duplicates 1, quarantined 3 (corrupt_image 1, missing_image 1, missing_trimap 1)" in first
        assert "quarantined inflow/images/broken_1.jpg: corrupt_image" in first
        assert "champion    v0.1.0 model" in first and "PROMOTED" in summary["decision"]
        assert "model@v0.2.0 is in prod" in summary["decision"]
        for signal in ("brightness", "long_side", "pet_fraction"):  # the server's 5 images against the training split
            assert any(line.split()[:1] == [signal] for line in first.splitlines()), first

        commit = git(root, "rev-parse", "HEAD").strip()
        assert git(root, "rev-parse", "HEAD~1").strip() == head and not git(root, "status", "--porcelain").strip()
        assert git(root, "rev-parse", "model@v0.2.0^{commit}").strip() == commit
        assert sh("python", "-m", "mlcore.ops.registry", "show").stdout.strip() == "model in prod: v0.2.0"
        release = json.loads((root / "release/release.json").read_text())
        assert release["promote"] and release["champion"]["version"] == "v0.1.0"
        assert release["champion"]["model_sha256"] != release["model_sha256"]
        assert "champion v0.1.0" in (root / "release/MODEL_CARD.md").read_text()
        snapshot = json.loads((root / "data/inflow/manifest.json").read_text())
        assert {row["image"] for row in snapshot["samples"]} >= {f"inflow/images/{i}.jpg" for i in ("Abyssinian_1",)}
        assert sum(row["image"].startswith("feedback/") for row in snapshot["samples"]) == 5
        pins = yaml.safe_load((root / "pins.yaml").read_text())
        assert pins["champion"]["version"] == "v0.1.0" and pins["inflow"]["objects"] == snapshot["objects"]
        prepared = json.loads((root / "data/prepared/manifest.json").read_text())
        assert sum(split["inflow"] for split in prepared["splits"].values()) == 8
        assert prepared["quality"]["inflow"] == 8

        second = sh("python", "-m", "mlcore.ops.retrain").stdout
        assert "0 new image(s)" in second and "nothing to do" in second
        assert git(root, "rev-parse", "HEAD").strip() == commit and not git(root, "status", "--porcelain").strip()

        # the bucket's inflow gone: a replay restores the pinned snapshot from the DVC remote, never re-lists
        for prefix in ("feedback/", "inflow/"):
            for item in client.list_objects_v2(Bucket=remote.bucket, Prefix=prefix).get("Contents", []):
                client.delete_object(Bucket=remote.bucket, Key=item["Key"])
        replayed = sh("python", "-m", "mlcore.ops.replay", "model@v0.2.0", "--retrain").stdout
        assert "reproduced byte for byte" in replayed and " NO\n" not in replayed
        rows = {line.split()[1]: line.split()[-1] for line in replayed.splitlines() if line.count(" ") > 3}
        assert rows["data/inflow"] == "yes" and rows["models/champion"] == "yes" and rows["release"] == "yes"

        rolled = sh("python", "-m", "mlcore.ops.registry", "rollback").stdout
        assert "prod: v0.2.0 -> v0.1.0" in rolled
        assert sh("python", "-m", "mlcore.ops.registry", "show").stdout.strip() == "model in prod: v0.1.0"
        refused = sh("python", "-m", "mlcore.ops.registry", "rollback", check=False)
        assert refused.returncode != 0 and "nothing to roll back to" in refused.stderr
    finally:
        sh("python", "-m", "mlcore.ops.remote", "down")

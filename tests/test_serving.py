"""The inference server, run for real (uvicorn subprocess on loopback) on an exported release, with a real
S3 server for feedback: V2 metadata and inference, masks equal to the pipeline's own calibrated
predictions, every bad request answered with a 4xx while the server keeps serving, Prometheus metrics."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import time

import numpy as np
import pytest
import requests
from PIL import Image

from mlcore.storage.seaweed import Credentials, LocalS3Server
from tests.helpers import REPO_ROOT, VENV_BIN, free_port_block

pytestmark = pytest.mark.slow  # trains, serves or moves real data: `make test-fast` skips it

MODEL = "pet-segmenter"
SIZE = 32
CALIBRATOR = {"method": "temperature", "temperature": 0.7}


def make_release(directory):
    """An (untrained) tiny model exported exactly as the release stage does."""
    from mlcore.export import export_saved_model
    from mlcore.model.serialize import save_model
    from mlcore.model.unet import build_unet

    model = build_unet(SIZE, decoder_filters=(16, 8, 8, 8))
    directory.mkdir()
    save_model(model, directory / "model.keras")
    export_saved_model(model, CALIBRATOR, SIZE, directory / "saved_model")
    release = {"model_name": MODEL, "image_size": SIZE, "class_names": ["pet", "background", "border"],
               "model_sha256": "ab" * 32, "calibrator_sha256": "cd" * 32, "calibrator": CALIBRATOR}  # fmt: skip
    (directory / "release.json").write_text(json.dumps(release))
    return model


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    model = make_release(root / "release")
    (root / "provenance.json").write_text(json.dumps({"source": {"commit": "f" * 40}}))
    credentials = Credentials("servingkey", "servingsecret0123456789")
    s3 = LocalS3Server(root / "s3", port=free_port_block(), bucket="mlcore")
    s3.start(credentials)
    port = free_port_block()
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "MLCORE_FEEDBACK_URL": "s3://mlcore/feedback",
           "MLCORE_S3_ENDPOINT": s3.endpoint, "AWS_ACCESS_KEY_ID": credentials.access_key,
           "AWS_SECRET_ACCESS_KEY": credentials.secret_key}  # fmt: skip
    process = subprocess.Popen(
        ["python", "-m", "mlcore.serving", "--release-dir", str(root / "release"), "--provenance",
         str(root / "provenance.json"), "--version", "model@v9.9.9", "--port", str(port)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, process.stdout.read()
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=1).ok:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.2)
    yield {"url": url, "model": model, "s3": s3.client(credentials)}
    process.kill()
    process.wait()
    s3.stop()


def infer(server, body, model=MODEL) -> requests.Response:
    return requests.post(f"{server['url']}/v2/models/{model}/infer", json=body, timeout=60)


def tensor_body(images: np.ndarray) -> dict:
    return {"inputs": [{"name": "image", "shape": list(images.shape), "datatype": "UINT8",
                        "data": images.ravel().tolist()}]}  # fmt: skip


def encoded(image: Image.Image, format: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return base64.b64encode(buffer.getvalue()).decode()


def test_metadata_carries_version_and_provenance(server):
    metadata = requests.get(f"{server['url']}/v2/models/{MODEL}", timeout=10).json()
    assert metadata["name"] == MODEL and metadata["versions"] == ["model@v9.9.9"]
    assert metadata["parameters"]["git_commit"] == "f" * 40
    assert metadata["parameters"]["model_sha256"] == "ab" * 32
    assert requests.get(f"{server['url']}/v2/health/live", timeout=10).ok


def test_masks_equal_the_pipelines_calibrated_predictions(server):
    from mlcore.calibration import apply_calibrator

    images = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    response = infer(server, tensor_body(images))
    assert response.ok, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    mask = np.array(outputs["mask"]["data"], np.uint8).reshape(outputs["mask"]["shape"])
    probabilities = np.array(outputs["probabilities"]["data"], np.float32).reshape(outputs["probabilities"]["shape"])
    # what the evaluate stage computes: the Keras model, then the calibrator, then argmax
    expected = apply_calibrator(CALIBRATOR, np.asarray(server["model"].predict(images.astype(np.float32), verbose=0)))
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert np.array_equal(mask, expected.argmax(axis=-1))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)


def test_encoded_images_of_any_size_get_a_mask_of_their_size(server):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (70, 50, 3), dtype=np.uint8))
    body = {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [encoded(image, "JPEG")]}],
            "outputs": [{"name": "mask"}]}  # fmt: skip
    response = infer(server, body)
    assert response.ok, response.text
    (mask,) = response.json()["outputs"]
    assert mask["name"] == "mask" and mask["shape"] == [1, 70, 50]
    grayscale = encoded(Image.new("L", (40, 40), 128))  # converted to RGB as prepare does
    assert infer(
        server, {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [grayscale]}]}
    ).ok


def truncated_jpeg() -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()[: buffer.tell() // 2]).decode()


def bytes_body(item: str) -> dict:
    return {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [item]}]}


BAD_REQUESTS = {
    "wrong dtype": (tensor_body(np.zeros((1, 8, 8, 3), np.uint8)) | {"inputs": [
        {"name": "image", "shape": [1, 8, 8, 3], "datatype": "FP32", "data": [0.0] * 192}]}, 400, "expected UINT8"),
    "wrong shape": ({"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "UINT8", "data": [0] * 64}]},
                    400, "expected [N, H, W, 3]"),
    "data does not fill the shape": ({"inputs": [{"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8",
                                                  "data": [0] * 10}]}, 400, "10 values"),
    "values out of range": ({"inputs": [{"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8",
                                         "data": [300] * 192}]}, 400, "0..255"),
    "not an image": (bytes_body(base64.b64encode(b"hello, not an image").decode()), 415, "not a readable"),
    "empty image": (bytes_body(""), 400, "empty"),
    "huge image": (bytes_body(encoded(Image.new("RGB", (5000, 5000)))), 413, "exceeds the limit"),
    "truncated upload": (bytes_body(truncated_jpeg()), 415, "not a readable"),
    "not base64": (bytes_body("%%%not-base64%%%"), 400, "not valid base64"),
    "no inputs": ({"outputs": []}, 400, "inputs"),
    "unknown output": (tensor_body(np.zeros((1, 8, 8, 3), np.uint8)) | {"outputs": [{"name": "logits"}]},
                       400, "unknown output"),
    "batch too large": ({"inputs": [{"name": "image", "shape": [65, 8, 8, 3], "datatype": "UINT8",
                                     "data": [0] * (65 * 192)}]}, 413, "exceeds the limit"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(server, case):
    body, status, message = BAD_REQUESTS[case]
    response = infer(server, body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert infer(server, tensor_body(np.zeros((1, SIZE, SIZE, 3), np.uint8))).ok


def test_unknown_model_and_invalid_json(server):
    response = infer(server, tensor_body(np.zeros((1, SIZE, SIZE, 3), np.uint8)), model="cat-detector")
    assert response.status_code == 404 and "unknown model 'cat-detector'" in response.json()["error"]
    response = requests.post(f"{server['url']}/v2/models/{MODEL}/infer", data=b"{not json", timeout=10)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


def test_feedback_is_stored_in_s3_as_a_new_sample_in_the_oxford_layout(server):
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    trimap = Image.fromarray(np.full((20, 30), 2, np.uint8))
    response = requests.post(f"{server['url']}/v2/models/{MODEL}/feedback",
                             json={"image": encoded(image), "mask": encoded(trimap)}, timeout=30)  # fmt: skip
    assert response.status_code == 201, response.text
    sample = response.json()["sample"]
    keys = {o["Key"] for o in server["s3"].list_objects_v2(Bucket="mlcore", Prefix="feedback/")["Contents"]}
    assert {f"feedback/images/{sample}.jpg", f"feedback/annotations/trimaps/{sample}.png"} <= keys
    stored = server["s3"].get_object(Bucket="mlcore", Key=f"feedback/annotations/trimaps/{sample}.png")["Body"].read()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(stored))), np.asarray(trimap))

    bad_mask = Image.fromarray(np.full((20, 30), 7, np.uint8))
    response = requests.post(f"{server['url']}/v2/models/{MODEL}/feedback",
                             json={"image": encoded(image), "mask": encoded(bad_mask)}, timeout=30)  # fmt: skip
    assert response.status_code == 400 and "found [7]" in response.json()["error"]


def test_prometheus_metrics_count_requests_errors_and_images(server):
    infer(server, {"inputs": []})
    text = requests.get(f"{server['url']}/metrics", timeout=10).text
    assert 'mlcore_requests_total{endpoint="/v2/models/{name}/infer",status="400"}' in text
    assert "mlcore_request_seconds_bucket" in text and "mlcore_images_total" in text

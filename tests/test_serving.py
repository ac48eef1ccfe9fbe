"""The inference server, run for real (uvicorn subprocess on loopback) on an exported release, with a real
S3 server for feedback: V2 metadata and inference (JSON and the binary tensor extension), masks equal to the
pipeline's own calibrated predictions, dynamic batching, the per-request budget, every malformed or hostile
request answered with a 4xx while the server keeps serving, health that answers during heavy work, feedback
behind a token and a per-client quota, Prometheus metrics."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import struct
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image

from bench.serving_load import peak_rss_mib
from mlcore.serving.client import binary_request, read_response
from mlcore.serving.protocol import HEADER_LENGTH
from mlcore.storage.seaweed import Credentials, LocalS3Server
from tests.helpers import REPO_ROOT, VENV_BIN, free_port_block, metric, read_http_reply
from workflows.serving import MEMORY_LIMIT_GIB, PROBE_TIMEOUT_S

pytestmark = pytest.mark.slow  # trains, serves or moves real data: `make test-fast` skips it

MODEL = "pet-segmenter"
SIZE = 32
CALIBRATOR = {"method": "temperature", "temperature": 0.7}
TOKEN = "feedback-token-0123456789abcdef"
FEEDBACK_PER_HOUR = 8


def make_release(directory):
    """An (untrained) tiny model exported exactly as the release stage does."""
    from mlcore.export import export_saved_model
    from mlcore.model.serialize import save_model
    from mlcore.model.unet import build_unet

    model = build_unet(SIZE, decoder_filters=(16, 8, 8, 8))
    directory.mkdir()
    save_model(model, directory / "model.keras")
    export_saved_model(model, CALIBRATOR, SIZE, directory / "saved_model")
    release = {
        "model_name": MODEL,
        "image_size": SIZE,
        "class_names": ["pet", "background", "border"],
        "model_sha256": "ab" * 32,
        "calibrator_sha256": "cd" * 32,
        "calibrator": CALIBRATOR,
    }
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
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "MLCORE_FEEDBACK_URL": "s3://mlcore/feedback",
        "MLCORE_FEEDBACK_TOKEN": TOKEN,
        "MLCORE_FEEDBACK_PER_HOUR": str(FEEDBACK_PER_HOUR),
        "MLCORE_S3_ENDPOINT": s3.endpoint,
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
    }
    process = subprocess.Popen(
        [
            "python",
            "-m",
            "mlcore.serving",
            "--release-dir",
            str(root / "release"),
            "--provenance",
            str(root / "provenance.json"),
            "--version",
            "model@v9.9.9",
            "--port",
            str(port),
            "--batch-delay-ms",
            "25",
        ],  # long enough that concurrent test requests always share a model call
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
    yield {"url": url, "port": port, "model": model, "s3": s3.client(credentials), "process": process}
    process.kill()
    process.wait()
    s3.stop()


def post(server, body: bytes, headers: dict, path: str = f"/v2/models/{MODEL}/infer") -> requests.Response:
    return requests.post(f"{server['url']}{path}", data=body, headers=headers, timeout=120)


def infer(server, body: dict, model: str = MODEL) -> requests.Response:
    return requests.post(f"{server['url']}/v2/models/{model}/infer", json=body, timeout=120)


def tensor_body(images: np.ndarray, outputs: tuple[str, ...] = ()) -> dict:
    body = {
        "inputs": [{"name": "image", "shape": list(images.shape), "datatype": "UINT8", "data": images.ravel().tolist()}]
    }
    return body | ({"outputs": [{"name": name} for name in outputs]} if outputs else {})


def image_bytes(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def encoded(image: Image.Image, format: str = "PNG") -> str:
    return base64.b64encode(image_bytes(image, format)).decode()


def bytes_body(*items: str) -> dict:
    return {"inputs": [{"name": "image_bytes", "shape": [len(items)], "datatype": "BYTES", "data": list(items)}]}


def assert_still_serving(server) -> None:
    assert server["process"].poll() is None, "the server died"
    assert infer(server, tensor_body(np.zeros((1, SIZE, SIZE, 3), np.uint8))).ok


def test_metadata_carries_version_and_provenance(server):
    metadata = requests.get(f"{server['url']}/v2/models/{MODEL}", timeout=10).json()
    assert metadata["name"] == MODEL and metadata["versions"] == ["model@v9.9.9"]
    assert metadata["parameters"]["git_commit"] == "f" * 40
    assert metadata["parameters"]["model_sha256"] == "ab" * 32
    assert requests.get(f"{server['url']}/v2", timeout=10).json()["extensions"] == ["binary_tensor_data", "feedback"]
    assert requests.get(f"{server['url']}/v2/health/live", timeout=10).ok


def test_masks_equal_the_pipelines_calibrated_predictions(server):
    from mlcore.calibration import apply_calibrator

    images = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    response = infer(server, tensor_body(images, ("mask", "probabilities")))
    assert response.ok, response.text
    outputs = read_response(response.content, response.headers)
    # what the evaluate stage computes: the Keras model, then the calibrator, then argmax
    expected = apply_calibrator(CALIBRATOR, np.asarray(server["model"].predict(images.astype(np.float32), verbose=0)))
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-5)
    assert np.array_equal(outputs["mask"], expected.argmax(axis=-1))
    np.testing.assert_allclose(outputs["probabilities"].sum(axis=-1), 1.0, atol=1e-5)


def test_the_mask_is_the_default_output_and_probabilities_come_only_when_asked(server):
    images = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    (output,) = infer(server, tensor_body(images)).json()["outputs"]
    assert output["name"] == "mask" and output["datatype"] == "UINT8" and output["shape"] == [1, SIZE, SIZE]
    names = [o["name"] for o in infer(server, tensor_body(images, ("probabilities",))).json()["outputs"]]
    assert names == ["probabilities"]


def test_binary_tensor_extension_in_and_out_equals_json(server):
    images = np.random.default_rng(3).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    as_json = read_response(*_content(infer(server, tensor_body(images, ("mask", "probabilities")))))
    body, headers = binary_request(pixels=images, outputs=("mask", "probabilities"))
    response = post(server, body, headers)
    assert response.ok, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header = json.loads(response.content[: int(response.headers[HEADER_LENGTH])])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [2 * SIZE * SIZE, 2 * SIZE * SIZE * 12]
    as_binary = read_response(response.content, response.headers)
    assert np.array_equal(as_binary["mask"], as_json["mask"])
    np.testing.assert_allclose(as_binary["probabilities"], as_json["probabilities"], rtol=1e-6)

    # BYTES in binary (4-byte length prefixes), with no Content-Type at all, as Triton's Python client sends it
    photo = Image.fromarray(np.random.default_rng(4).integers(0, 256, (45, 60, 3), dtype=np.uint8))
    body, headers = binary_request(encoded=[image_bytes(photo, "JPEG")] * 2)
    del headers["content-type"]
    response = post(server, body, headers)
    assert response.ok, response.text
    assert read_response(response.content, response.headers)["mask"].shape == (2, 45, 60)


def _content(response: requests.Response) -> tuple[bytes, dict]:
    assert response.ok, response.text
    return response.content, response.headers


def test_encoded_images_of_any_size_get_a_mask_of_their_size(server):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (70, 50, 3), dtype=np.uint8))
    response = infer(server, bytes_body(encoded(image, "JPEG")))
    assert response.ok, response.text
    (mask,) = response.json()["outputs"]
    assert mask["name"] == "mask" and mask["shape"] == [1, 70, 50]
    grayscale = encoded(Image.new("L", (40, 40), 128))  # converted to RGB as prepare does
    assert infer(server, bytes_body(grayscale)).ok


def test_concurrent_requests_are_batched_and_each_gets_its_own_result(server):
    images = np.random.default_rng(5).integers(0, 256, (8, 1, SIZE, SIZE, 3), dtype=np.uint8)
    alone = [read_response(*_content(infer(server, tensor_body(image, ("probabilities",))))) for image in images]
    calls_before, images_before = (
        metric(server["url"], "mlcore_batch_size_count"),
        metric(server["url"], "mlcore_batch_size_sum"),
    )
    with ThreadPoolExecutor(len(images)) as pool:
        together = list(
            pool.map(
                lambda image: read_response(*_content(infer(server, tensor_body(image, ("probabilities",))))), images
            )
        )
    calls = metric(server["url"], "mlcore_batch_size_count") - calls_before
    assert metric(server["url"], "mlcore_batch_size_sum") - images_before == len(images)
    assert calls < len(images), "no two concurrent requests shared a model call"
    for single, batched in zip(alone, together, strict=True):
        np.testing.assert_allclose(batched["probabilities"], single["probabilities"], atol=1e-5)


def _truncated_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but whose pixel data is cut off: decoding it fails, so a
    413 for it proves the size was checked from the header, before decoding."""
    data = image_bytes(Image.new("L", (width, height)))
    return data[: len(data) // 3]


def truncated_jpeg() -> str:
    data = image_bytes(Image.fromarray(np.full((64, 64, 3), 90, np.uint8)), "JPEG")
    return base64.b64encode(data[: len(data) // 2]).decode()


def raw(text: str) -> tuple[bytes, dict]:
    return text.encode(), {"content-type": "application/json"}


TINY_IMAGE = {"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8", "data": [0] * 192}
RAGGED = np.zeros((1, 8, 8, 3), int).tolist()
RAGGED[0][3] = RAGGED[0][3][:-1]
SHIFTED = np.zeros((1, 8, 8, 3), int).tolist()  # every level's total right, one pixel moved to the next row
SHIFTED[0][4].append(SHIFTED[0][3].pop())


def image_json(data: str, shape: str = "[1, 8, 8, 3]") -> str:
    return f'{{"inputs": [{{"name": "image", "shape": {shape}, "datatype": "UINT8", "data": {data}}}]}}'


TINY_BINARY = {"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8", "parameters": {"binary_data_size": 192}}


def binary_body(tensor: dict, tail: bytes) -> tuple[bytes, dict]:
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + tail, {HEADER_LENGTH: str(len(header)), "content-type": "application/octet-stream"}


PNG_2048 = encoded(Image.new("L", (2048, 2048)))  # a 12 KB PNG that would be 50 MB of probabilities as JSON
BAD_REQUESTS = {
    "wrong dtype": (
        tensor_body(np.zeros((1, 8, 8, 3), np.uint8))
        | {"inputs": [{"name": "image", "shape": [1, 8, 8, 3], "datatype": "FP32", "data": [0.0] * 192}]},
        400,
        "expected UINT8",
    ),
    "wrong shape": (
        {"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "UINT8", "data": [0] * 64}]},
        400,
        "expected [N, H, W, 3]",
    ),
    "data does not fill the shape": (raw(image_json("[0, 0]")), 400, "does not fit shape"),
    "values out of range": (raw(image_json(json.dumps([300] * 192))), 400, "0..255"),
    "Infinity": (raw(image_json("[Infinity]")), 400, "not valid JSON"),
    "NaN": (raw(image_json("[NaN]")), 400, "not valid JSON"),
    "2**70": (raw(image_json(json.dumps([2**70] * 192))), 400, "must be integers"),
    "floats": (raw(image_json(json.dumps([1.7] * 192))), 400, "must be integers"),
    "strings": (raw(image_json(json.dumps(["7"] * 192))), 400, "must be integers"),
    "booleans among integers": (raw(image_json(json.dumps([True] + [0] * 191))), 400, "must be integers"),
    "ragged nesting": (raw(image_json(json.dumps(RAGGED))), 400, "ragged"),
    "ragged nesting with the right totals": (raw(image_json(json.dumps(SHIFTED))), 400, "ragged"),
    "nested data of 160k pixel lists": (
        raw(image_json(json.dumps(np.zeros((1, 400, 400, 3), int).tolist()), "[1, 400, 400, 3]")),
        400,
        "send tensor data flat",
    ),
    "an ignored field of 120k lists": (
        (json.dumps({"inputs": [TINY_IMAGE], "x": [[0]] * 120_000}).encode(), {"content-type": "application/json"}),
        400,
        "send tensor data flat",
    ),
    "data nested deeper than the shape": (
        raw(image_json(json.dumps(np.zeros((1, 8, 8, 3, 1), int).tolist()))),
        400,
        "must be integers",
    ),
    "lists and values mixed at one level": (
        raw(image_json(json.dumps([np.zeros((8, 8, 3), int).tolist(), 0]), "[2, 8, 8, 3]")),
        400,
        "nests lists and values",
    ),
    "JSON nested 100k deep": (raw('{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}"), 400, "lists and objects"),
    "JSON nested 2000 deep": (raw('{"inputs": ' + "[" * 2000 + "]" * 2000 + "}"), 400, "not valid JSON"),
    "data nested 100k deep": (raw(image_json("[" * 100_000 + "]" * 100_000)), 400, "lists and objects"),
    "no images, huge dimensions": (
        {"inputs": [TINY_IMAGE | {"shape": [0, 2**62, 2**62, 3], "data": []}]},
        400,
        "the batch is empty",
    ),
    "no images, huge dimensions, binary": (
        binary_body(TINY_BINARY | {"shape": [0, 2**62, 2**62, 3], "parameters": {"binary_data_size": 0}}, b""),
        400,
        "the batch is empty",
    ),
    "a shape of 20 dimensions": ({"inputs": [TINY_IMAGE | {"shape": [1] * 20}]}, 400, "up to 4"),
    "a non-ASCII digit in Inference-Header-Content-Length": ((b"{}", {HEADER_LENGTH: "\u00b2"}), 400, "must be an"),
    "a name of a megabyte": ({"inputs": [TINY_IMAGE | {"name": "A" * 1_000_000}]}, 400, "unknown input 'AAAA"),
    "a JSON body over 8 MiB": ({"inputs": [TINY_IMAGE | {"data": [0] * (3 * 1024 * 1024)}]}, 413, "exceeds"),
    "a gzip body": (
        (b"\x1f\x8b", {"content-type": "application/json", "content-encoding": "gzip"}),
        415,
        "uncompressed",
    ),
    "a 16-bit PNG": (bytes_body(encoded(Image.fromarray(np.zeros((16, 16), np.uint16)))), 415, "8-bit"),
    "more BYTES elements than the shape": (
        binary_body(
            {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 8}},
            struct.pack("<I", 0) * 2,
        ),
        400,
        "more than the 1 elements",
    ),
    "outputs a string": ({"inputs": [TINY_IMAGE], "outputs": "mask"}, 400, "'outputs' must be list"),
    "outputs a list of strings": ({"inputs": [TINY_IMAGE], "outputs": ["mask"]}, 400, "outputs[0] must be an object"),
    "inputs a list of numbers": ({"inputs": [1]}, 400, "inputs[0] must be an object"),
    "id not a string": ({"inputs": [TINY_IMAGE], "id": [[[1]]]}, 400, "'id' must be str"),
    "shape of booleans": ({"inputs": [TINY_IMAGE | {"shape": [True, 8, 8, 3]}]}, 400, "shape must be"),
    "binary_data_output not a boolean": (
        {"inputs": [TINY_IMAGE], "parameters": {"binary_data_output": "yes"}},
        400,
        "must be bool",
    ),
    "not an image": (bytes_body(base64.b64encode(b"hello, not an image").decode()), 415, "not a readable"),
    "GIF": (bytes_body(encoded(Image.new("RGB", (16, 16)), "GIF")), 415, "JPEG or PNG"),
    "TIFF": (bytes_body(encoded(Image.new("RGB", (16, 16)), "TIFF")), 415, "JPEG or PNG"),
    "BMP": (bytes_body(encoded(Image.new("RGB", (16, 16)), "BMP")), 415, "JPEG or PNG"),
    "empty image": (bytes_body(""), 400, "empty"),
    "huge image": (bytes_body(encoded(Image.new("L", (5000, 5000)))), 413, "exceeds the limit"),
    "truncated upload": (bytes_body(truncated_jpeg()), 415, "not a readable"),
    "not base64": (bytes_body("%%%not-base64%%%"), 400, "not valid base64"),
    "no inputs": ({"outputs": []}, 400, "inputs"),
    "unknown output": (tensor_body(np.zeros((1, 8, 8, 3), np.uint8), ("logits",)), 400, "unknown output"),
    "batch too large": (
        {"inputs": [{"name": "image", "shape": [65, 8, 8, 3], "datatype": "UINT8", "data": [0] * (65 * 192)}]},
        413,
        "exceed the limit",
    ),
    "images of different sizes": (
        bytes_body(encoded(Image.new("RGB", (16, 16))), encoded(Image.new("RGB", (16, 20)))),
        400,
        "different sizes",
    ),
    "probabilities of 2048x2048 as JSON": (
        bytes_body(PNG_2048) | {"outputs": [{"name": "probabilities"}]},
        413,
        "binary_data_output",
    ),
    "pixels over the request's budget, declared by headers": (
        bytes_body(*[base64.b64encode(_truncated_png(3000, 3000)).decode()] * 2),
        413,
        "budget",
    ),
    "Inference-Header-Content-Length beyond the body": ((b"{}", {HEADER_LENGTH: "99"}), 400, "must be an integer"),
    "binary size beyond the body": (binary_body(TINY_BINARY, bytes(10)), 400, "binary_data_size"),
    "bytes after the tensors": (binary_body(TINY_BINARY, bytes(194)), 400, "after the tensors"),
    "a BYTES length prefix beyond the data": (
        binary_body(
            {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}},
            struct.pack("<I", 1000) + b"ab",
        ),
        400,
        "beyond the binary data",
    ),
    "both data and binary_data_size": (binary_body(TINY_IMAGE | TINY_BINARY, bytes(192)), 400, "not both"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(server, case):
    body, status, message = BAD_REQUESTS[case]
    images_before = metric(server["url"], "mlcore_images_total")
    response = infer(server, body) if isinstance(body, dict) else post(server, *body)
    assert response.status_code == status, response.text[:500]
    assert message in response.json()["error"] and len(response.content) < 1100  # never an echo of the request
    assert metric(server["url"], "mlcore_images_total") == images_before, "the model ran on a request it refused"
    assert_still_serving(server)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_json_in_a_body_a_browser_could_send_cross_origin_is_refused(server, content_type):
    """A browser may send text/plain or a form cross-origin without a CORS preflight: refused. No Content-Type
    at all is taken, as Triton's clients send JSON requests without one (inference changes nothing)."""
    body = json.dumps(tensor_body(np.zeros((1, SIZE, SIZE, 3), np.uint8))).encode()
    response = post(server, body, {"content-type": content_type})
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    assert post(server, body, {"content-type": "application/json; charset=utf-8"}).ok
    assert post(server, body, {}).ok


def test_each_output_may_override_binary_data_output_and_the_id_comes_back(server):
    images = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    body = tensor_body(images) | {
        "id": "request-42",
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "mask", "parameters": {"binary_data": False}}, {"name": "probabilities"}],
    }
    response = infer(server, body)
    header = json.loads(response.content[: int(response.headers[HEADER_LENGTH])])
    assert header["id"] == "request-42"
    mask, probabilities = header["outputs"]
    assert len(mask["data"]) == SIZE * SIZE  # JSON, as asked
    assert probabilities["parameters"]["binary_data_size"] == SIZE * SIZE * 12 and "data" not in probabilities
    versioned = requests.post(f"{server['url']}/v2/models/{MODEL}/versions/model@v9.9.9/infer", json=body, timeout=60)
    assert versioned.ok


def test_a_small_png_of_a_large_image_gets_its_mask_not_62_mb(server):
    response = infer(server, bytes_body(encoded(Image.new("RGB", (1024, 1024), (200, 120, 40)))))
    assert response.ok, response.text
    (mask,) = response.json()["outputs"]
    assert mask["name"] == "mask" and mask["shape"] == [1, 1024, 1024]
    assert len(response.content) < 2.5 * 1024 * 1024  # one JSON digit and a comma a pixel, mask only


@pytest.mark.parametrize("kind", ["json", "binary"])
def test_a_chunked_body_over_the_limit_is_cut_off_while_it_streams(server, kind):
    """80 MB in chunked transfer encoding (no Content-Length to check): the server answers 413 once it has
    counted its limit (8 MiB of JSON, 64 MiB with binary tensors) and stops reading; the client never gets to
    send it all."""
    limit = {"json": 8, "binary": 64}[kind] * 1024 * 1024
    chunk, total = b"x" * (1024 * 1024), 80 * 1024 * 1024
    binary_header = "Inference-Header-Content-Length: 100\r\n" if kind == "binary" else ""
    connection = socket.create_connection(("127.0.0.1", server["port"]), timeout=60)
    connection.sendall(
        f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"{binary_header}Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    sent, replies = 0, []
    reader = threading.Thread(target=lambda: replies.append(read_http_reply(connection)))
    reader.start()
    try:
        while sent < total and not replies:
            connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        connection.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed the connection after its answer
    reader.join(timeout=60)
    connection.close()
    assert replies and replies[0].startswith(b"HTTP/1.1 413"), replies
    assert b"exceeds %d bytes" % limit in replies[0]
    assert sent < total and sent <= limit + 16 * len(chunk)  # what the socket buffers held, not the whole body
    assert_still_serving(server)


def _largest_json_request() -> tuple[bytes, dict]:
    """The most work one JSON body may ask for: 4.2 million integers, just under the 8 MiB limit."""
    data = b",".join([b"0"] * (1180 * 1180 * 3))
    return b'{"inputs": [{"name": "image", "shape": [1, 1180, 1180, 3], "datatype": "UINT8", "data": [%s]}]}' % (
        data
    ), {"content-type": "application/json"}


def _largest_png_request() -> tuple[bytes, dict]:
    """A 4096x4096 PNG: decode, resize, the mask at 16.7 Mpx."""
    gradient = np.linspace(0, 255, 4096, dtype=np.uint8)
    return binary_request(encoded=[image_bytes(Image.fromarray(np.stack([np.tile(gradient, (4096, 1))] * 3, -1)))])


@pytest.mark.parametrize("heavy_request", [_largest_json_request, _largest_png_request])
def test_health_answers_within_the_probe_timeout_while_a_large_request_is_processed(server, heavy_request):
    """The largest requests the limits allow run for a second or more; the liveness probe of the KServe manifest
    must not time out meanwhile, and the server must stay well under the pod's memory limit."""
    body, headers = heavy_request()
    assert len(body) < 8 * 1024 * 1024
    result: list[requests.Response] = []
    heavy = threading.Thread(target=lambda: result.append(post(server, body, headers)))
    heavy.start()
    latencies = []
    while heavy.is_alive():
        started = time.perf_counter()
        assert requests.get(f"{server['url']}/v2/health/live", timeout=PROBE_TIMEOUT_S).ok
        assert requests.get(f"{server['url']}/metrics", timeout=PROBE_TIMEOUT_S).ok
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)
    heavy.join()
    assert result[0].ok, result[0].text[:300]
    assert read_response(result[0].content, result[0].headers)["mask"].shape[0] == 1
    assert len(latencies) >= 3 and max(latencies) < PROBE_TIMEOUT_S, latencies
    peak = peak_rss_mib(server["process"].pid) / 1024  # this server's peak over every test so far, GiB
    assert peak < MEMORY_LIMIT_GIB * 0.75, f"peak RSS {peak:.2f} GiB against the pod's {MEMORY_LIMIT_GIB} GiB limit"


def test_unknown_model_and_invalid_json(server):
    response = infer(server, tensor_body(np.zeros((1, SIZE, SIZE, 3), np.uint8)), model="cat-detector")
    assert response.status_code == 404 and "unknown model 'cat-detector'" in response.json()["error"]
    response = post(server, b"{not json", {"content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    response = requests.get(f"{server['url']}/v2/no-such-route", timeout=10)
    assert response.status_code == 404 and "error" in response.json()


def feedback(server, body, token: str | None = TOKEN, source: str = "127.0.0.1", **headers) -> tuple[int, dict]:
    """POST feedback from loopback address `source` (each address is its own client for the quota)."""
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60, source_address=(source, 0))
    headers = {"content-type": "application/json", **headers}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request("POST", f"/v2/models/{MODEL}/feedback", data, headers)
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return response.status, {**payload, "headers": dict(response.getheaders())}


def sample(seed: int = 2) -> dict:
    image = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    return {"image": encoded(image), "mask": encoded(Image.fromarray(np.full((20, 30), 2, np.uint8)))}


def test_feedback_is_stored_in_s3_as_a_new_sample_in_the_oxford_layout(server):
    status, answer = feedback(server, sample())
    assert status == 201, answer
    keys = {o["Key"] for o in server["s3"].list_objects_v2(Bucket="mlcore", Prefix="feedback/")["Contents"]}
    assert {f"feedback/images/{answer['sample']}.jpg", f"feedback/annotations/trimaps/{answer['sample']}.png"} <= keys
    stored = server["s3"].get_object(Bucket="mlcore", Key=f"feedback/annotations/trimaps/{answer['sample']}.png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(stored["Body"].read()))), np.full((20, 30), 2))
    record = json.loads(
        server["s3"].get_object(Bucket="mlcore", Key=f"feedback/metadata/{answer['sample']}.json")["Body"].read()
    )
    assert record["client"] == "127.0.0.1" and record["version"] == "model@v9.9.9" and record["received"]

    bad_mask = sample() | {"mask": encoded(Image.fromarray(np.full((20, 30), 7, np.uint8)))}
    status, answer = feedback(server, bad_mask)
    assert status == 400 and "found [7]" in answer["error"]


def test_feedback_needs_the_token_before_anything_else(server):
    """Without the token, nothing of the request is looked at: not its type, size or content."""
    for token in (None, "wrong-token-0123456789abcdef"):
        status, answer = feedback(server, sample(), token=token)
        assert status == 401 and "Bearer" in answer["error"] and answer["headers"]["www-authenticate"] == "Bearer"
    for body, headers in [(b"x" * (17 * 1024 * 1024), {}), (b"{not json", {"content-type": "text/plain"})]:
        assert feedback(server, body, token=None, **headers)[0] == 401


def test_feedback_refuses_what_a_browser_could_send_cross_origin_and_oversized_masks(server):
    status, answer = feedback(server, sample(), **{"content-type": "text/plain"})
    assert status == 415, answer
    # a mask PNG declaring 6000x5500 (33 Mpx), cut off: refused by its header, never decoded
    huge = sample() | {"mask": base64.b64encode(_truncated_png(6000, 5500)).decode()}
    status, answer = feedback(server, huge)
    assert status == 413 and "exceeds the limit" in answer["error"], answer
    other_size = sample() | {"mask": encoded(Image.fromarray(np.full((21, 30), 2, np.uint8)))}
    status, answer = feedback(server, other_size)
    assert status == 400 and "30x20 trimap is required" in answer["error"], answer


def test_feedback_has_a_quota_of_stored_samples_per_client(server):
    refused = [
        feedback(server, sample(), source="127.0.0.2", **{"content-type": "text/plain"})[0],
        feedback(server, sample() | {"mask": "%%%"}, source="127.0.0.2")[0],
    ]
    assert refused == [415, 400]  # refused samples are not counted
    statuses = [feedback(server, sample(), source="127.0.0.2")[0] for _ in range(FEEDBACK_PER_HOUR)]
    assert statuses == [201] * FEEDBACK_PER_HOUR
    status, answer = feedback(server, sample(), source="127.0.0.2")
    assert status == 429 and "127.0.0.2" in answer["error"] and int(answer["headers"]["retry-after"]) > 0
    assert feedback(server, sample(), source="127.0.0.3")[0] == 201  # another client is not affected


def test_prometheus_metrics_count_requests_errors_and_images(server):
    infer(server, {"inputs": []})
    text = requests.get(f"{server['url']}/metrics", timeout=10).text
    assert 'mlcore_requests_total{endpoint="/v2/models/{name}/infer",status="400"}' in text
    assert "mlcore_request_seconds_bucket" in text and "mlcore_images_total" in text
    assert "mlcore_batch_size_bucket" in text and "mlcore_internal_errors_total 0.0" in text


@pytest.mark.parametrize("chunk", [1 << 20, 1000])
def test_the_mask_at_the_input_size_is_the_argmax_of_the_resized_probabilities_bit_for_bit(chunk, monkeypatch):
    """mask_at_size interpolates only near class boundaries (`chunk` pixels at a time); it must agree everywhere
    with resizing all of the probabilities (TensorFlow's bilinear resize) and taking the argmax."""
    from mlcore.serving import images
    from mlcore.serving.images import at_size, mask_at_size, mask_of

    monkeypatch.setattr(images, "CHUNK_PIXELS", chunk)

    rng = np.random.default_rng(7)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).resize((128, 128)))
    base = rng.random((1, 128, 128, 1), dtype=np.float32)
    near_tie = np.concatenate([base, np.nextafter(base, np.float32(2)), base / 2], axis=-1)  # class 1 by one ulp
    fields = [rng.random((2, 128, 128, 3), dtype=np.float32), (smooth / smooth.sum(-1, keepdims=True))[None], near_tie]
    for probabilities in fields:
        for height, width in [(375, 500), (129, 1000), (8, 8), (64, 300), (128, 128), (1024, 77)]:
            probabilities = probabilities.astype(np.float32)
            expected = mask_of(at_size(probabilities, height, width))
            assert np.array_equal(mask_at_size(probabilities, height, width), expected), (height, width)

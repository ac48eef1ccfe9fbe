"""The inference server's own code paths that need no trained model: a model that fails (the 500 path), clients
that vanish or stall, the byte budget, feedback that is off unless configured, a feedback store that hangs,
the feedback configuration and quota, the mask's argmax, and secrets that stay out of reprs and open files.

The server runs for real (uvicorn on loopback, in a thread). Its model is a stand-in with the served model's
interface: one that fails, because a real SavedModel cannot be made to fail on demand, and one that answers
"background" everywhere, because these tests are about the server, not the model. The feedback store that
hangs is a real TCP listener that accepts and never answers, as a stalled S3 endpoint does.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
import uvicorn
from PIL import Image

from mlcore.serving.app import create_app
from mlcore.serving.bodies import DroppableHttpTools
from mlcore.serving.feedback import FeedbackConfig, FeedbackConfigError
from mlcore.serving.images import mask_of
from mlcore.serving.limits import Limits
from mlcore.serving.protocol import HEADER_LENGTH
from mlcore.serving.quota import ClientQuota, client_key
from tests.helpers import REPO_ROOT, free_port_block, metric, read_http_reply

INFER = "/v2/models/pet-segmenter/infer"
TOKEN = "feedback-token-0123456789abcdef"


class StandInModel:
    """The served model's interface (mlcore.serving.model.ReleasedModel)."""

    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.name, self.version, self.commit, self.image_size = "pet-segmenter", "v0", "0" * 40, 8
        self.class_names = ["pet", "background", "border"]
        self.release = {"model_sha256": "0" * 64}

    def predict(self, images: np.ndarray) -> np.ndarray:
        if self.fails:
            raise RuntimeError("the model's graph failed")
        return np.tile(np.float32([0.1, 0.8, 0.1]), (*images.shape[:3], 1))

    def metadata(self) -> dict:
        return {"name": self.name}


@contextlib.contextmanager
def serving(app):
    """`app` under uvicorn (with the server's own HTTP protocol) on a free loopback port, in a thread."""
    port = free_port_block(1)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="critical", http=DroppableHttpTools))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def broken_server():
    with serving(create_app(StandInModel(fails=True))) as url:
        yield url


def tiny_body(data: list[int] | None = None) -> dict:
    return {"inputs": [{"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8", "data": data or [0] * 192}]}


def test_an_internal_error_is_a_counted_500_and_the_server_keeps_serving(broken_server):
    before = metric(broken_server, "mlcore_internal_errors_total")
    for _ in range(2):
        response = requests.post(f"{broken_server}{INFER}", json=tiny_body(), timeout=10)
        assert response.status_code == 500 and "internal server error" in response.json()["error"]
        assert "graph failed" not in response.text  # the details go to the log, not to the client
    assert metric(broken_server, "mlcore_internal_errors_total") - before == 2
    assert metric(broken_server, 'mlcore_requests_total{endpoint="/v2/models/{name}/infer",status="500"}') >= 2
    assert requests.get(f"{broken_server}/v2/health/live", timeout=10).ok


def test_a_client_that_leaves_mid_body_is_not_an_internal_error(broken_server):
    before = metric(broken_server, "mlcore_internal_errors_total")
    gone = socket.create_connection(("127.0.0.1", int(broken_server.rsplit(":", 1)[1])), timeout=10)
    gone.sendall(
        b"POST /v2/models/pet-segmenter/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b"x" * 10
    )
    gone.close()
    deadline = time.monotonic() + 10
    while not metric(broken_server, 'mlcore_requests_total{endpoint="/v2/models/{name}/infer",status="499"}'):
        assert time.monotonic() < deadline, "the disconnect was not recorded"
        time.sleep(0.05)
    assert metric(broken_server, "mlcore_internal_errors_total") == before


def test_a_slow_body_is_cut_off_and_buffered_bytes_are_bounded():
    """With room for one body's bytes, a client that stalls halfway through its body holds that room until the
    body timeout (408); a second request waits for it, then goes ahead."""
    body = b'{"inputs": [{"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8", "data": [0]}]}'
    app = create_app(StandInModel(fails=True), limits=Limits(max_buffered_bytes=len(body), body_timeout_s=1.0))
    with serving(app) as url:
        stalled = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=30)
        stalled.sendall(
            b"POST /v2/models/pet-segmenter/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body[:20])
        )
        time.sleep(0.3)  # the stalled request holds the room
        started = time.perf_counter()
        waited = requests.post(f"{url}{INFER}", data=body, headers={"content-type": "application/json"}, timeout=30)
        assert time.perf_counter() - started > 0.5  # it could not start before the stalled body timed out
        assert waited.status_code == 400 and "does not fit shape" in waited.json()["error"]  # then it was read
        reply = read_http_reply(stalled)
        stalled.close()
        assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in reply


def test_idle_connections_hold_none_of_the_budget():
    """Connections that send headers announcing 64 MiB and then nothing are charged only for what arrives: a
    small request right after them is served at once, not after their body timeout."""
    app = create_app(StandInModel(fails=False), limits=Limits(max_buffered_bytes=1024 * 1024, body_timeout_s=4.0))
    with serving(app) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(8)]
        for connection in idle:
            connection.sendall(
                b"POST /v2/models/pet-segmenter/infer HTTP/1.1\r\nHost: x\r\n"
                b"Inference-Header-Content-Length: 1\r\nContent-Length: 67108864\r\n\r\n"
            )
        time.sleep(0.3)
        started = time.perf_counter()
        assert requests.post(f"{url}{INFER}", json=tiny_body(), timeout=30).ok
        assert time.perf_counter() - started < 2.0  # the idle ones are cut off at 4 s
        for connection in idle:
            connection.close()


def test_a_client_that_does_not_read_its_response_is_cut_off_and_its_bytes_come_back():
    """A 2048x2048 mask as JSON (~8 MB, 16 MiB budgeted) to a client that reads its first bytes, then stops:
    the response holds the whole byte budget, so the next request waits past its body deadline (503); at the
    send deadline the slow client's connection is dropped (499), and the budget is free again."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1, 2048, 2048, 3],
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": 2048 * 2048 * 3},
                }
            ]
        }
    ).encode()
    body, headers = header + bytes(2048 * 2048 * 3), {HEADER_LENGTH: str(len(header))}  # the mask as JSON
    budget = 16 * 1024 * 1024 + 4096 + 100  # the response's estimate and a little: no room for another body
    # the deadline: 2 s, plus the response's size at 10 MB/s (the socket buffers hold a few MB at most)
    limits = Limits(max_buffered_bytes=budget, body_timeout_s=1.0, send_grace_s=2.0, min_send_rate=10e6)
    with serving(create_app(StandInModel(fails=False), limits=limits)) as url:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the response cannot drain
        slow.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        slow.settimeout(30)
        slow.sendall(
            f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
            + b"\r\n"
            + body
        )
        assert slow.recv(12) == b"HTTP/1.1 200"  # the response has started: it holds the budget now
        busy = requests.post(f"{url}{INFER}", json=tiny_body(), timeout=30)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text
        deadline = time.monotonic() + 20
        while not metric(url, 'mlcore_requests_total{endpoint="/v2/models/{name}/infer",status="499"}'):
            assert time.monotonic() < deadline, "the slow client was never cut off"
            time.sleep(0.1)
        assert requests.post(f"{url}{INFER}", json=tiny_body(), timeout=30).ok
        received = 0
        with contextlib.suppress(ConnectionResetError):  # dropped: what was in flight, then a reset
            while chunk := slow.recv(65536):
                received += len(chunk)
        slow.close()
    # reset: the megabytes the kernel held for the client are discarded (a plain close would deliver them)
    assert received < 1024 * 1024, f"the client still got {received} bytes: the connection was not reset"


def test_feedback_is_off_unless_configured(broken_server):
    assert requests.get(f"{broken_server}/v2", timeout=10).json()["extensions"] == ["binary_tensor_data"]
    response = requests.post(f"{broken_server}/v2/models/pet-segmenter/feedback", json={}, timeout=10)
    assert response.status_code == 404 and "feedback is off" in response.json()["error"]


def _png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_stalled_feedback_store_answers_503_and_inference_goes_on():
    """The S3 endpoint accepts connections and never answers: feedback gets a 503 within its deadline, and
    inference meanwhile is served (the writes have threads of their own)."""
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        config = FeedbackConfig(
            "s3://mlcore/feedback", f"http://127.0.0.1:{blackhole.getsockname()[1]}", TOKEN, write_timeout_s=1.0
        )
        sample = {"image": _png(np.zeros((16, 16, 3), np.uint8)), "mask": _png(np.full((16, 16), 2, np.uint8))}
        with serving(create_app(StandInModel(fails=False), config)) as url:
            answers = []
            posts = [
                threading.Thread(
                    target=lambda: answers.append(
                        requests.post(
                            f"{url}/v2/models/pet-segmenter/feedback",
                            json=sample,
                            timeout=60,
                            headers={"authorization": f"Bearer {TOKEN}"},
                        )
                    )
                )
                for _ in range(3)
            ]
            for post in posts:
                post.start()
            time.sleep(0.3)
            assert requests.post(f"{url}{INFER}", json=tiny_body(), timeout=5).ok  # while three writes hang
            for post in posts:
                post.join()
    assert [answer.status_code for answer in answers] == [503] * 3
    assert "retry later" in answers[0].json()["error"] and answers[0].headers["retry-after"] == "30"


def test_the_versioned_routes_answer_for_the_served_version_only(broken_server):
    assert requests.get(f"{broken_server}/v2/models/pet-segmenter/versions/v0/ready", timeout=10).ok
    response = requests.get(f"{broken_server}/v2/models/pet-segmenter/versions/v9/ready", timeout=10)
    assert response.status_code == 404 and "unknown version 'v9'" in response.json()["error"]


def test_feedback_configuration_needs_a_token_and_hides_it():
    assert FeedbackConfig.from_environment({}) is None
    url = {"MLCORE_FEEDBACK_URL": "s3://b/f"}
    for env, problem in [
        (url, "MLCORE_FEEDBACK_TOKEN is unset"),
        (url | {"MLCORE_FEEDBACK_TOKEN": "short"}, "MLCORE_FEEDBACK_TOKEN is not usable"),
        (url | {"MLCORE_FEEDBACK_TOKEN": " " * 20}, "MLCORE_FEEDBACK_TOKEN is unset"),
        (url | {"MLCORE_FEEDBACK_TOKEN": "tökén" * 4}, "MLCORE_FEEDBACK_TOKEN is not usable"),
        (url | {"MLCORE_FEEDBACK_TOKEN": "t" * 20, "MLCORE_FEEDBACK_PER_HOUR": "-3"}, "MLCORE_FEEDBACK_PER_HOUR"),
        (url | {"MLCORE_FEEDBACK_TOKEN": "t" * 20, "MLCORE_FEEDBACK_PER_HOUR": "\u00b2"}, "MLCORE_FEEDBACK_PER_HOUR"),
        (url | {"MLCORE_FEEDBACK_TOKEN": "t" * 20, "MLCORE_S3_ENDPOINT": "not a url"}, "MLCORE_S3_ENDPOINT"),
        ({"MLCORE_FEEDBACK_URL": "http://b/f", "MLCORE_FEEDBACK_TOKEN": "t" * 20}, "expected s3://"),
        ({"MLCORE_FEEDBACK_URL": "s3://", "MLCORE_FEEDBACK_TOKEN": "t" * 20}, "names no bucket"),
    ]:
        with pytest.raises(FeedbackConfigError, match=problem):
            FeedbackConfig.from_environment(env)
    config = FeedbackConfig.from_environment(url | {"MLCORE_FEEDBACK_TOKEN": "s" * 20 + "\n"})
    assert "s" * 20 not in repr(config)
    assert config.authorized("Bearer " + "s" * 20) and config.authorized("bearer " + "s" * 20)
    assert (
        not config.authorized("Bearer " + "s" * 19) and not config.authorized(None) and not config.authorized("s" * 20)
    )


def test_the_server_refuses_to_start_with_feedback_but_no_token(tmp_path):
    (tmp_path / "release.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "mlcore.serving", "--release-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        env={"MLCORE_FEEDBACK_URL": "s3://mlcore/feedback", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "MLCORE_FEEDBACK_TOKEN is unset" in result.stderr


def test_the_quota_refills_over_the_hour_per_client_and_refunds():
    now = [0.0]
    quota = ClientQuota(per_hour=2, clock=lambda: now[0])
    assert quota.take("a") == 0 and quota.take("a") == 0
    assert quota.take("a") == pytest.approx(1800)  # one sample every 30 minutes
    assert quota.take("b") == 0
    quota.refund("a")  # a request that did not store its sample
    assert quota.take("a") == 0 and quota.take("a") > 0
    now[0] = 1800.0
    assert quota.take("a") == 0 and quota.take("a") > 0


def test_the_quota_tracks_a_bounded_number_of_clients_and_keys_addresses():
    from mlcore.serving import quota as quota_module

    quota = ClientQuota(per_hour=1, clock=lambda: 0.0)
    for client in range(3 * quota_module.MAX_TRACKED):
        assert quota.take(str(client)) == 0
    assert len(quota.buckets) == quota_module.MAX_TRACKED
    assert quota.take(str(3 * quota_module.MAX_TRACKED - 1)) > 0  # the recent ones are still counted
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7" != client_key("::ffff:192.0.2.8")  # dual-stack listener
    assert client_key("192.0.2.7") == "192.0.2.7" and client_key(None) == "unknown"


def test_the_mask_is_argmax_with_ties_to_the_lower_label():
    probabilities = np.random.default_rng(0).random((2, 7, 9, 3)).astype(np.float32)
    probabilities[0, 0, 0] = [0.4, 0.4, 0.2]
    probabilities[0, 0, 1] = [0.2, 0.4, 0.4]
    mask = mask_of(probabilities)
    assert mask.dtype == np.uint8 and np.array_equal(mask, probabilities.argmax(axis=-1))


def test_secrets_stay_out_of_reprs_and_files_holding_them_are_private(tmp_path):
    from mlcore.ops.dvc_state import S3Remote
    from mlcore.storage.private import private_file
    from mlcore.storage.seaweed import Credentials

    assert "hunter2-secret" not in repr(Credentials("AKIA", "hunter2-secret"))
    assert "hunter2-secret" not in repr(S3Remote("storage", "b", "p", None, "AKIA", "hunter2-secret"))
    existing = tmp_path / "config.local"
    existing.write_text("[core]\n")
    existing.chmod(0o644)
    for path in (existing, tmp_path / "new" / "token"):
        assert private_file(path).stat().st_mode & 0o777 == 0o600
    assert existing.read_text() == "[core]\n"

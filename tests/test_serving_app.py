"""The inference server's own code paths that need no trained model: a model that fails (the 500 path),
feedback that is off unless configured, its configuration and quota, the mask's argmax, and secrets that stay
out of reprs and world-readable files.

The server runs for real (uvicorn on loopback, in a thread). Its model is a stand-in: a class with the
served model's interface whose `predict` raises, because a real SavedModel cannot be made to fail on demand.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
import uvicorn

from mlcore.serving.app import create_app
from mlcore.serving.feedback import FeedbackConfig, FeedbackConfigError
from mlcore.serving.images import mask_of
from mlcore.serving.quota import ClientQuota
from tests.helpers import REPO_ROOT, free_port_block


class BrokenModel:
    """The served model's interface (mlcore.serving.model.ReleasedModel), failing as a corrupt model would."""

    def __init__(self) -> None:
        self.name, self.version, self.commit, self.image_size = "pet-segmenter", "v0", "0" * 40, 8
        self.class_names = ["pet", "background", "border"]
        self.release = {"model_sha256": "0" * 64}

    def predict(self, images: np.ndarray) -> np.ndarray:
        raise RuntimeError("the model's graph failed")

    def metadata(self) -> dict:
        return {"name": self.name}


@pytest.fixture(scope="module")
def broken_server():
    port = free_port_block(1)
    server = uvicorn.Server(uvicorn.Config(create_app(BrokenModel()), port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_an_internal_error_is_a_counted_500_and_the_server_keeps_serving(broken_server):
    body = {"inputs": [{"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8", "data": [0] * 192}]}
    for _ in range(2):
        response = requests.post(f"{broken_server}/v2/models/pet-segmenter/infer", json=body, timeout=10)
        assert response.status_code == 500 and "internal server error" in response.json()["error"]
        assert "graph failed" not in response.text  # the details go to the log, not to the client
    metrics = requests.get(f"{broken_server}/metrics", timeout=10).text
    assert "mlcore_internal_errors_total 2.0" in metrics
    assert 'mlcore_requests_total{endpoint="/v2/models/{name}/infer",status="500"} 2.0' in metrics
    assert requests.get(f"{broken_server}/v2/health/live", timeout=10).ok


def test_feedback_is_off_unless_configured(broken_server):
    assert requests.get(f"{broken_server}/v2", timeout=10).json()["extensions"] == ["binary_tensor_data"]
    response = requests.post(f"{broken_server}/v2/models/pet-segmenter/feedback", json={}, timeout=10)
    assert response.status_code == 404 and "feedback is off" in response.json()["error"]


def test_feedback_configuration_needs_a_token_and_hides_it():
    assert FeedbackConfig.from_environment({}) is None
    for env in (
        {"MLCORE_FEEDBACK_URL": "s3://b/feedback"},
        {"MLCORE_FEEDBACK_URL": "s3://b/f", "MLCORE_FEEDBACK_TOKEN": "short"},
    ):
        with pytest.raises(FeedbackConfigError, match="MLCORE_FEEDBACK_TOKEN"):
            FeedbackConfig.from_environment(env)
    with pytest.raises(FeedbackConfigError, match="MLCORE_FEEDBACK_PER_HOUR"):
        FeedbackConfig.from_environment({"MLCORE_FEEDBACK_URL": "s3://b/f", "MLCORE_FEEDBACK_TOKEN": "t" * 20,
                                         "MLCORE_FEEDBACK_PER_HOUR": "-3"})  # fmt: skip
    config = FeedbackConfig.from_environment({"MLCORE_FEEDBACK_URL": "s3://b/f", "MLCORE_FEEDBACK_TOKEN": "s" * 20})
    assert "s" * 20 not in repr(config)
    assert config.authorized("Bearer " + "s" * 20) and config.authorized("bearer " + "s" * 20)
    assert (
        not config.authorized("Bearer " + "s" * 19) and not config.authorized(None) and not config.authorized("s" * 20)
    )


def test_the_server_refuses_to_start_with_feedback_but_no_token(tmp_path):
    (tmp_path / "release.json").write_text("{}")
    result = subprocess.run([sys.executable, "-m", "mlcore.serving", "--release-dir", str(tmp_path)], cwd=REPO_ROOT,
                            env={"MLCORE_FEEDBACK_URL": "s3://mlcore/feedback", "PATH": ""}, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0 and "MLCORE_FEEDBACK_TOKEN is unset" in result.stderr


def test_the_quota_refills_over_the_hour_per_client():
    now = [0.0]
    quota = ClientQuota(per_hour=2, clock=lambda: now[0])
    assert quota.take("a") == 0 and quota.take("a") == 0
    assert quota.take("a") == pytest.approx(1800)  # one sample every 30 minutes
    assert quota.take("b") == 0
    now[0] = 1800.0
    assert quota.take("a") == 0 and quota.take("a") > 0


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

"""The drift signal: the signals and their buckets (mlcore.drift), the server's histograms of them, and the
report that compares served traffic with the training split (mlcore.ops.drift). Fast: a stand-in model
whose masks are known, no training."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import requests
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from mlcore import drift
from mlcore.drift import METRIC_NAMES, SIGNALS
from mlcore.ops import drift as report
from mlcore.serving.app import create_app
from mlcore.serving.metrics import ServerMetrics
from tests.helpers import metric
from tests.test_serving_app import INFER, StandInModel, _png, serving

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


class PetWhereRed(StandInModel):
    """Answers "pet" where a pixel's red channel is bright, "background" elsewhere: each mask is known."""

    def __init__(self) -> None:
        super().__init__(fails=False)

    def predict(self, images: np.ndarray) -> np.ndarray:
        pet = images[..., :1] > 127
        return np.where(pet, np.float32([0.8, 0.1, 0.1]), np.float32([0.1, 0.8, 0.1]))


def columns(white: int, count: int = 1) -> np.ndarray:
    """`count` 8x8 images whose first `white` columns are white and the rest black."""
    images = np.zeros((count, 8, 8, 3), np.uint8)
    images[:, :, :white] = 255
    return images


def tensor_body(images: np.ndarray) -> dict:
    return {
        "inputs": [{"name": "image", "shape": list(images.shape), "datatype": "UINT8", "data": images.ravel().tolist()}]
    }


def png_body(width: int, height: int, color: tuple[int, int, int], outputs: tuple[str, ...] = ("mask",)) -> dict:
    image = np.full((height, width, 3), color, np.uint8)
    return {
        "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [_png(image)]}],
        "outputs": [{"name": name} for name in outputs],
    }


def infer(url: str, body: dict) -> None:
    response = requests.post(f"{url}{INFER}", json=body, timeout=30)
    assert response.ok, response.text


def manifest_of(histograms: dict[str, list[int]]) -> dict:
    statistics = {signal: {"edges": list(SIGNALS[signal]), "counts": counts} for signal, counts in histograms.items()}
    return {"splits": {"train": {"statistics": statistics}}}


def test_buckets_follow_prometheus_le():
    edges = (0.1, 0.2)
    assert [drift.bucket_of(v, edges) for v in (0.0, 0.1, 0.1000001, 0.2, 0.2000001, 7.0)] == [0, 0, 1, 1, 2, 2]
    assert drift.histogram([0.05, 0.1, 0.15, 0.2, 0.3, 9.0], edges) == [2, 2, 2]
    assert drift.histogram([], edges) == [0, 0, 0]


def test_psi_is_zero_for_identical_distributions_and_grows_with_the_shift():
    training = [0, 5, 40, 50, 5, 0]
    assert drift.population_stability_index(training, training) == 0.0
    shifted = [training[-k:] + training[:-k] for k in range(1, 4)]  # the mass moves 1, 2, 3 buckets up
    psi = [drift.population_stability_index(training, served) for served in shifted]
    assert 0 < psi[0] < psi[1] < psi[2]
    with pytest.raises(ValueError, match="cannot be compared"):
        drift.population_stability_index([1, 2], [1, 2, 3])


def test_brightness_and_pet_fraction():
    assert drift.brightness(np.zeros((4, 6, 3), np.uint8)) == 0.0
    assert drift.brightness(np.full((4, 6, 3), 255, np.uint8)) == pytest.approx(1.0)
    assert drift.brightness(columns(3)[0]) == pytest.approx(3 / 8)
    labels = np.ones((4, 4), np.uint8)
    labels[:1] = drift.PET
    labels[1, 0] = 2  # a border pixel is not pet
    assert drift.pet_fraction(labels) == 4 / 16
    assert drift.pet_fraction(np.ones((3, 3), np.uint8)) == 0.0


def test_verdicts_and_thresholds():
    assert [report.verdict(psi, 100) for psi in (0.0, 0.099, 0.1, 0.249, 0.25, 3.0)] == (
        ["no shift"] * 2 + ["moderate shift"] * 2 + ["large shift"] * 2
    )
    assert report.verdict(3.0, 29) == report.verdict(0.0, 0) == "too few requests"
    assert report.verdict(3.0, 5, min_served=5) == "large shift"


def test_served_histograms_reads_the_servers_cumulative_buckets():
    """Values at the edges too: Prometheus' buckets and mlcore.drift.bucket_of count them alike."""
    values = {
        "brightness": [0.0, 0.1, 0.35, 0.9, 0.95],
        "long_side": [8, 64, 65, 4096, 5000, 300],
        "pet_fraction": [0.0, 0.05, 0.5, 1.0],
    }
    metrics = ServerMetrics()
    metrics.observe_served(values)
    served = report.served_histograms(generate_latest(metrics.registry).decode())
    assert served == {signal: drift.histogram(values[signal], SIGNALS[signal]) for signal in SIGNALS}
    # several replicas' series (a label apart) are summed
    registry = CollectorRegistry()
    for signal, name in METRIC_NAMES.items():
        histogram = Histogram(name, "help", ["pod"], registry=registry, buckets=SIGNALS[signal])
        for pod, value in enumerate(values[signal]):
            histogram.labels(f"pod-{pod % 2}").observe(value)
    assert report.served_histograms(generate_latest(registry).decode()) == served


def test_served_histograms_refuses_other_buckets_or_a_missing_histogram():
    registry = CollectorRegistry()
    Histogram(METRIC_NAMES["brightness"], "help", registry=registry, buckets=(0.25, 0.5, 0.75))
    for signal in ("long_side", "pet_fraction"):
        Histogram(METRIC_NAMES[signal], "help", registry=registry, buckets=SIGNALS[signal])
    with pytest.raises(report.DriftError, match=r"mlcore_input_brightness's buckets .* are not mlcore\.drift\.SIGNALS"):
        report.served_histograms(generate_latest(registry).decode())
    with pytest.raises(report.DriftError, match="no mlcore_input_brightness histogram"):
        report.served_histograms("# TYPE mlcore_images_total counter\nmlcore_images_total 3.0\n")


def test_training_histograms_checks_the_manifests_edges():
    counts = {signal: list(range(len(edges) + 1)) for signal, edges in SIGNALS.items()}
    assert report.training_histograms(manifest_of(counts)) == counts
    other = manifest_of(counts)
    other["splits"]["train"]["statistics"]["long_side"]["edges"] = [100, 200]
    with pytest.raises(report.DriftError, match=r"data/prepared/manifest.json: .* long_side .* re-run prepare"):
        report.training_histograms(other)
    with pytest.raises(report.DriftError, match=r"data/prepared/manifest.json has no .* brightness: re-run prepare"):
        report.training_histograms({"splits": {"train": {}}})


@pytest.fixture(scope="module")
def pet_server():
    with serving(create_app(PetWhereRed())) as url:
        yield url


def test_the_server_counts_the_signals_of_answered_requests_only(pet_server):
    """Two 8x8 tensors with three white columns, a 300x100 red PNG (mask asked) and an 8x8 black PNG
    (probabilities only); then requests that fail (400, 404, 415), which are not counted."""
    before = report.served_histograms(requests.get(f"{pet_server}/metrics", timeout=10).text)
    infer(pet_server, tensor_body(columns(3, count=2)))
    infer(pet_server, png_body(300, 100, (200, 0, 0)))
    infer(pet_server, png_body(8, 8, BLACK, outputs=("probabilities",)))
    bad = [
        ("/v2/models/pet-segmenter/infer", {"inputs": [{**tensor_body(columns(3))["inputs"][0], "data": [0]}]}),
        ("/v2/models/other/infer", tensor_body(columns(3))),
        (
            "/v2/models/pet-segmenter/infer",
            {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["bm90IGFuIGltYWdl"]}]},
        ),
    ]
    for path, body in bad:
        assert requests.post(f"{pet_server}{path}", json=body, timeout=30).status_code in (400, 404, 415)
    served = report.served_histograms(requests.get(f"{pet_server}/metrics", timeout=10).text)
    expected = {
        "brightness": [3 / 8, 3 / 8, 200 * drift.LUMA[0] / 255, 0.0],  # at the model's size: 8x8, as they came
        "long_side": [8, 8, 300, 8],  # as the images arrived
        "pet_fraction": [3 / 8, 3 / 8, 1.0, 0.0],  # the returned masks; the black PNG's argmax at model size
    }
    for signal, values in expected.items():
        counted = [after - earlier for after, earlier in zip(served[signal], before[signal], strict=True)]
        assert counted == drift.histogram(values, SIGNALS[signal]), signal
    assert metric(pet_server, "mlcore_input_long_side_pixels_count") - sum(before["long_side"]) == 4


def test_the_report_from_the_servers_metrics_and_the_manifest(tmp_path, monkeypatch, capsys):
    """Served: 40 8x8 images of 0..7 white columns. Training: the same brightness and pet shares (ten times
    the images), but 500-pixel images: no shift, a large shift, no shift; with 3 served: too few."""
    with serving(create_app(PetWhereRed())) as url:
        infer(url, tensor_body(np.concatenate([columns(white) for white in range(3)])))
        few = requests.get(f"{url}/metrics", timeout=10).text
        infer(url, tensor_body(np.concatenate([columns(white) for white in range(3, 8)])))
        for _ in range(4):
            infer(url, tensor_body(np.concatenate([columns(white) for white in range(8)])))
        shares = [white / 8 for white in range(8)] * 5
        training = {
            "brightness": drift.histogram(shares * 10, SIGNALS["brightness"]),
            "long_side": drift.histogram([500] * 400, SIGNALS["long_side"]),
            "pet_fraction": drift.histogram(shares * 10, SIGNALS["pet_fraction"]),
        }
        manifest = report.training_histograms(manifest_of(training))
        rows = report.compare(manifest, report.served_histograms(requests.get(f"{url}/metrics", timeout=10).text))
        assert [(row.signal, row.training_count, row.served_count, row.verdict) for row in rows] == [
            ("brightness", 400, 40, "no shift"),
            ("long_side", 400, 40, "large shift"),
            ("pet_fraction", 400, 40, "no shift"),
        ]
        assert rows[1].psi > 1  # the smoothing keeps the others above 0 (40 served images)
        early = report.compare(manifest, report.served_histograms(few))
        assert [row.verdict for row in early] == ["too few requests"] * 3 and early[0].served_count == 3
        text = report.format_report(rows)
        assert "0.1" in text.splitlines()[0] and "0.25" in text.splitlines()[0] and len(text.splitlines()) == 5
        # the command: metrics from the URL, the manifest from a file
        (tmp_path / "manifest.json").write_text(json.dumps(manifest_of(training)))
        argv = ["drift", "--metrics", f"{url}/metrics", "--manifest", str(tmp_path / "manifest.json")]
        monkeypatch.setattr(sys, "argv", argv)
        report.main()
    assert capsys.readouterr().out.strip() == text

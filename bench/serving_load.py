"""Load on the V2 inference server: throughput, p50/p99 latency and the health endpoint's p99 at 1, 4 and
16 concurrent clients, the server's peak memory, and the exported SavedModel's own throughput measured in the
same run in-process at the batch size the server forms at 16 clients: the SavedModel alone on the same images
already at the model's size (the target's baseline), and the server's whole per-image work without HTTP.
Needs `make run` first (it serves the workspace's release/).

Two payloads, both binary (the tensor data extension) and mask-only:
- a pet-photo-sized JPEG (500x375): decode, resize, model, upsample to 500x375, mask;
- a 128x128 UINT8 tensor, the model's own size: the server's overhead alone.
The clients run in this process, on the same machine: their CPU time is printed, since it is taken from the
server on a small machine.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from mlcore.serving.client import binary_request, read_response
from mlcore.serving.protocol import HEADER_LENGTH

PORT = 28080
SECONDS_PER_LEVEL = 15
CLIENTS = (1, 4, 16)
HEALTH_PERIOD_S = 0.05
TARGET_RATIO = 0.7


def photo_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(4))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def batch_histogram(port: int) -> tuple[float, float]:
    """(sum, count) of the server's mlcore_batch_size histogram."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("mlcore_batch_size_"))
    return float(values["mlcore_batch_size_sum"]), float(values["mlcore_batch_size_count"])


def run_level(port: int, path: str, body: bytes, headers: dict, clients: int) -> dict:
    latencies: list[float] = []
    health: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + SECONDS_PER_LEVEL

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            content = response.read()
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status}: {content[:300]!r}")
            with lock:
                latencies.append(time.perf_counter() - started)

    def prober() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            connection.request("GET", "/v2/health/live")
            connection.getresponse().read()
            health.append(time.perf_counter() - started)
            time.sleep(HEALTH_PERIOD_S)

    batches_before = batch_histogram(port)
    cpu_before = time.process_time()
    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)] + [threading.Thread(target=prober)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    batches_after = batch_histogram(port)
    return {
        "clients": clients,
        "throughput": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "health_p99_ms": 1000 * percentile(health, 0.99),
        "mean_batch": (batches_after[0] - batches_before[0]) / max(1, batches_after[1] - batches_before[1]),
        "client_cpu_share": (time.process_time() - cpu_before) / elapsed,
    }


def images_per_second(step, images_per_step: int) -> float:
    """The best of three windows: this machine stalls now and then, and a stall is not the code's speed."""
    step()
    best = 0.0
    for _ in range(3):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < SECONDS_PER_LEVEL / 4:
            step()
            count += images_per_step
        best = max(best, count / (time.perf_counter() - started))
    return best


def in_process(serve, encoded: list[bytes] | None, tensor: np.ndarray, batch: int) -> tuple[float, float]:
    """Images/s in this process at `batch` images a call: (the SavedModel alone on model-sized images, as the
    server's model thread runs it; the server's whole per-image work, one step after the other: parse, decode,
    resize, SavedModel, mask at the input's size, encode, with no HTTP and no threads)."""
    from mlcore.serving import inference
    from mlcore.serving.limits import Limits

    inputs = np.repeat(tensor[:1], batch, axis=0)
    body, headers = binary_request(encoded=encoded * batch) if encoded else binary_request(pixels=inputs)

    def whole_work() -> None:
        job = inference.prepare(body, headers[HEADER_LENGTH], Limits(), inputs.shape[1], 3)
        inference.finish(job, serve(images=job.model_input)["probabilities"].numpy(), {})

    model_only = images_per_second(lambda: serve(images=inputs)["probabilities"].numpy(), batch)
    return model_only, images_per_second(whole_work, batch)


def main() -> None:
    if not Path("release/release.json").exists():
        sys.exit("error: no release/ here; run `make run` first")
    from mlcore.serving.images import to_model_size
    from mlcore.serving.model import recorded_numerics

    release = json.loads(Path("release/release.json").read_text())
    os.environ.update(recorded_numerics(Path("models/provenance.json")))  # as the server does
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    size, path = release["image_size"], f"/v2/models/{release['model_name']}/infer"
    jpeg = photo_jpeg()
    photo = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    tensor = np.random.default_rng(1).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    payloads = {
        "500x375 JPEG, mask": (binary_request(encoded=[jpeg]), [jpeg], to_model_size([photo], size)),
        f"{size}x{size} UINT8, mask": (binary_request(pixels=tensor), None, tensor),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "mlcore.serving", "--port", str(PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows = []
    try:
        while not _ready(PORT):
            time.sleep(0.2)
        print(f"server peak RSS after start: {peak_rss_mib(server.pid):.0f} MiB")
        for label, ((body, headers), _, _) in payloads.items():
            connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            assert "mask" in read_response(response.read(), response.headers), label
            rows += [(label, run_level(PORT, path, body, headers, clients)) for clients in CLIENTS]
        peak = peak_rss_mib(server.pid)
    finally:
        server.kill()
        server.wait()
    print(f"server peak RSS under load: {peak:.0f} MiB")
    print(
        f"{'payload':<22} {'clients':>7} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'health p99':>10} "
        f"{'batch':>5} {'client CPU':>10}"
    )
    for label, row in rows:
        print(
            f"{label:<22} {row['clients']:>7} {row['throughput']:>7.1f} {row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f} "
            f"{row['health_p99_ms']:>8.1f}ms {row['mean_batch']:>5.1f} {row['client_cpu_share']:>9.0%}"
        )
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)  # as the server (mlcore.serving --threads)
    serve = tf.saved_model.load("release/saved_model").signatures["serve"]
    for label, (_, encoded, images) in payloads.items():
        served = next(row for name, row in rows if name == label and row["clients"] == CLIENTS[-1])
        batch = max(1, round(served["mean_batch"]))
        model_only, whole_work = in_process(serve, encoded, images, batch)
        ratio = served["throughput"] / model_only
        verdict = "meets" if ratio >= TARGET_RATIO else "misses"
        print(
            f"{label}, in-process at batch {batch}: SavedModel {model_only:.1f} images/s, the same work without "
            f"HTTP {whole_work:.1f} images/s; server at {CLIENTS[-1]} clients {served['throughput']:.1f} req/s = "
            f"{ratio:.2f}x the SavedModel ({verdict} the {TARGET_RATIO}x target), "
            f"{served['throughput'] / whole_work:.2f}x the same work"
        )


def _ready(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/v2/health/ready")
        return connection.getresponse().status == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()

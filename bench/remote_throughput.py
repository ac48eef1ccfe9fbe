"""Push and pull throughput of the prepared data and the model through DVC, against plain boto3
moving the same bytes to the same (local SeaweedFS) server. Needs `make run` first.

Runs in a scratch DVC project on a scratch server, so the project's own remote is untouched.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.timing import boto3_round_trip, timed
from mlcore.storage.seaweed import Credentials, LocalS3Server

PAYLOAD = [Path("data/prepared"), Path("models/model.keras")]
PORT = 25333  # clear of the default server (8333-8339) and its gRPC twins (18333-18339)


def files(paths: list[Path]) -> list[Path]:
    return [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]


def main() -> None:
    repo = Path.cwd()
    total = sum(f.stat().st_size for f in files(PAYLOAD))
    credentials = Credentials("benchkey", "benchsecret0123456789")
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        server = LocalS3Server(scratch / "s3", port=PORT, bucket="bench")
        server.start(credentials)
        try:
            project = scratch / "project"
            project.mkdir()
            dvc = [sys.executable, "-m", "dvc"]
            subprocess.run(["git", "init", "-q"], cwd=project, check=True)
            subprocess.run([*dvc, "init", "-q"], cwd=project, check=True)
            from dvc.config import Config

            with Config(dvc_dir=str(project / ".dvc"), validate=False).edit("local") as config:
                config["core"]["remote"] = "bench"
                config["remote"]["bench"] = {
                    "url": "s3://bench/dvc",
                    "endpointurl": server.endpoint,
                    "access_key_id": credentials.access_key,
                    "secret_access_key": credentials.secret_key,
                }
            for path in PAYLOAD:
                target = project / path.name
                (shutil.copytree if path.is_dir() else shutil.copy2)(repo / path, target)
                subprocess.run([*dvc, "add", "-q", path.name], cwd=project, check=True)
            dvc_push = timed(*dvc, "push", cwd=project)
            dvc_fixed = timed(*dvc, "push", cwd=project)  # nothing left to send: start-up and index cost
            shutil.rmtree(project / ".dvc" / "cache")
            for path in PAYLOAD:
                shutil.rmtree(project / path.name) if path.is_dir() else (project / path.name).unlink()
            dvc_pull = timed(*dvc, "pull", cwd=project)

            boto_push, boto_pull = boto3_round_trip(server.client(credentials), "bench", files(PAYLOAD), scratch)
        finally:
            server.stop()
    mb = total / 1e6
    print(f"payload: {len(files(PAYLOAD))} files, {mb:.1f} MB")
    print(f"push  dvc {mb / dvc_push:7.1f} MB/s   boto3 {mb / boto_push:7.1f} MB/s   ratio {boto_push / dvc_push:.2f}")
    print(f"pull  dvc {mb / dvc_pull:7.1f} MB/s   boto3 {mb / boto_pull:7.1f} MB/s   ratio {boto_pull / dvc_pull:.2f}")
    print(f"dvc fixed cost per command (a push with nothing to send): {dvc_fixed:.2f} s")
    print(
        f"push without it: dvc {mb / (dvc_push - dvc_fixed):7.1f} MB/s   ratio {boto_push / (dvc_push - dvc_fixed):.2f}"
    )


if __name__ == "__main__":
    main()

"""Wall time of a command, for the benchmarks."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def timed(*command: str, cwd: Path | None = None) -> float:
    """Seconds `command` took; a failure stops the benchmark with the command's own output."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - start


def boto3_round_trip(client, bucket: str, paths: list[Path], scratch: Path) -> tuple[float, float]:
    """Seconds to upload, then download, `paths` one by one with boto3's managed transfers (the baseline the
    DVC transfers are compared with)."""
    start = time.perf_counter()
    for path in paths:
        client.upload_file(str(path), bucket, f"boto3/{path.as_posix()}")
    uploaded = time.perf_counter() - start
    start = time.perf_counter()
    for path in paths:
        client.download_file(bucket, f"boto3/{path.as_posix()}", str(scratch / "download.bin"))
    return uploaded, time.perf_counter() - start


def epoch_timer():
    """A Keras callback that records the seconds of each `fit` (mlcore.training runs one per epoch)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    return EpochTimer()

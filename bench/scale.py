"""The pipeline at the real data's scale (issue #12): the built-in sample generator at the Oxford-IIIT Pet's
size (7,390 images of 375-500 px a side, like the real JPEGs), in a scratch clone with its own S3 server.

Prints images/s of fetch and prepare; DVC push and pull of data/raw and data/prepared against boto3 moving
the same files to the same server (ratio = DVC's throughput / boto3's, target >= 0.8); restoring both
stages from the run-cache against downloading their outputs and against recomputing them; training images/s
at 128 px through the real input pipeline; and `make run` on the real set on this machine, extrapolated from
those rates with params.yaml's epochs and search. About 15 minutes on 2 cores.

`python -m bench.scale [NUM_IMAGES]` (default 7390), from the repository root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.timing import boto3_round_trip, timed
from mlcore.params import Params, load_params

REAL_IMAGES = 7390
REAL_ARCHIVE_MB = 811  # images.tar.gz + annotations.tar.gz
SIDES = {"min_side": 375, "max_side": 500}
STAGE_OUTPUTS = {"fetch": Path("data/raw"), "prepare": Path("data/prepared")}


def files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file())


def megabytes(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def forget(stage: str) -> None:
    """Remove a stage's output and the whole local DVC cache, as on a fresh machine."""
    shutil.rmtree(STAGE_OUTPUTS[stage], ignore_errors=True)
    shutil.rmtree(".dvc/cache", ignore_errors=True)


def training_rates(params: Params) -> tuple[float, float, float]:
    """Images/s of training steps and of validation predictions at 128 px through the real input pipeline,
    and the first steps' extra seconds (tracing)."""
    from mlcore.data.tfrecords import evaluation_batches, training_batches
    from mlcore.io import read_json
    from mlcore.model.unet import unet_builder
    from mlcore.training import compile_model, disable_graph_rewrites

    disable_graph_rewrites()
    t, batch_size = params.train, params.train.batch_size
    prepared = STAGE_OUTPUTS["prepare"]
    manifest = read_json(prepared / "manifest.json")
    model = unet_builder(params.model, manifest["image_size"])()
    compile_model(model, params.train, 1000)
    full_batches = {split: manifest["splits"][split]["count"] // batch_size for split in ("train", "validation")}
    warm, steps = 4, min(40, full_batches["train"] - 4, full_batches["validation"])

    def fit(count: int, epoch: int) -> float:
        batches = training_batches(prepared, batch_size, params.seed, epoch, t.shuffle_buffer, t.horizontal_flip)
        batches = batches.take(count)
        start = time.perf_counter()
        model.fit(batches, epochs=1, verbose=0)
        return time.perf_counter() - start

    first, steady = fit(warm, 0), fit(steps, 1)
    traced = first - warm * steady / steps
    validation = evaluation_batches(prepared, "validation", batch_size).take(steps)
    model.predict(validation.take(2), verbose=0)
    start = time.perf_counter()
    model.predict(validation, verbose=0)
    return steps * batch_size / steady, steps * batch_size / (time.perf_counter() - start), traced


def main() -> None:
    num_images = int(sys.argv[1]) if len(sys.argv) > 1 else REAL_IMAGES
    repo = Path.cwd()
    scratch = Path(tempfile.mkdtemp(prefix="mlcore-scale-"))
    project = scratch / "project"
    subprocess.run(["git", "clone", "-q", str(repo), str(project)], check=True)
    os.chdir(project)
    overridden = yaml.safe_load(Path("params.yaml").read_text())
    overridden["data"]["source"] = "sample"
    overridden["data"]["sample"].update(num_images=num_images, **SIDES)
    Path("params.yaml").write_text(yaml.safe_dump(overridden, sort_keys=False))
    os.environ["MLCORE_S3_PORT"] = "26333"
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # dvc, and its stages' python
    from mlcore.runtime import pin_runtime

    params = load_params()
    pin_runtime(params.runtime, params.seed)  # before anything imports TensorFlow
    from mlcore.ops import remote as local_remote
    from mlcore.ops.dvc_state import default_remote

    print(local_remote.up())
    try:
        seconds = {stage: timed("dvc", "repro", "--single-item", stage) for stage in STAGE_OUTPUTS}
        rows = [f"{stage:<8} {num_images / s:7.1f} images/s  ({s:.1f} s)" for stage, s in seconds.items()]
        remote = default_remote()
        transfer = {}
        pushes = {stage: timed("dvc", "push", "--run-cache", stage) for stage in STAGE_OUTPUTS}
        for stage, output in STAGE_OUTPUTS.items():
            paths, push = files(output), pushes[stage]
            forget(stage)
            pull = timed("dvc", "pull", stage)
            boto_push, boto_pull = boto3_round_trip(remote.client(), remote.bucket, paths, scratch)
            transfer[stage] = pull
            mb = megabytes(paths)
            rows += [
                f"{output}: {len(paths)} files, {mb:.0f} MB",
                f"  push  dvc {mb / push:6.1f} MB/s  boto3 {mb / boto_push:6.1f} MB/s  ratio {boto_push / push:.2f}",
                f"  pull  dvc {mb / pull:6.1f} MB/s  boto3 {mb / boto_pull:6.1f} MB/s  ratio {boto_pull / pull:.2f}",
            ]
        for stage in STAGE_OUTPUTS:
            forget(stage)
        # as `make reproduce` restores: objects and run-cache fetched, then `dvc repro` checks the outputs out
        restore = timed("dvc", "fetch", "--run-cache", *STAGE_OUTPUTS) + timed("dvc", "repro", "prepare")
        rows.append(
            f"fetch+prepare: run-cache restore {restore:.1f} s | download {sum(transfer.values()):.1f} s | "
            f"recompute {sum(seconds.values()):.1f} s"
        )
        train_ips, predict_ips, traced = training_rates(params)
        rows.append(
            f"training {train_ips:.1f} images/s, validation {predict_ips:.1f} images/s at 128 px "
            f"(first steps +{traced:.1f} s)"
        )
        rows.append(extrapolate(seconds["prepare"] * REAL_IMAGES / num_images, train_ips, predict_ips, traced, params))
    finally:
        local_remote.down()
        os.chdir(repo)
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n".join(rows))


def extrapolate(prepare_s: float, train_ips: float, predict_ips: float, traced: float, params: Params) -> str:
    """`make run` on the real set here: download, prepare, every training's epochs and validation passes
    (the search's rungs and the final training), calibration and evaluation passes, per-process start-up."""
    from mlcore.io import read_json

    splits = read_json(STAGE_OUTPUTS["prepare"] / "manifest.json")["splits"]
    total = sum(split["count"] for split in splits.values())
    counts = {name: split["count"] * REAL_IMAGES / total for name, split in splits.items()}
    trainings = [rung.epochs for rung in params.tune.rungs for _ in rung.slots] + [params.train.epochs]
    epochs = sum(trainings)
    per_epoch = counts["train"] / train_ips + counts["validation"] / predict_ips
    start_up = 8.0  # per stage process: Python, TensorFlow's import, reading params (measured: ~5-10 s)
    training = epochs * per_epoch + len(trainings) * (traced + start_up)
    evaluation = 2 * (counts["calibration"] + counts["test"]) / predict_ips + 3 * start_up
    download = REAL_ARCHIVE_MB / 20  # at 20 MB/s
    total_s = download + prepare_s + training + evaluation
    return (
        f"make run on {REAL_IMAGES} images (2 cores, extrapolated): download {download / 60:.1f} min at 20 MB/s, "
        f"prepare {prepare_s / 60:.1f} min, {len(trainings)} trainings / {epochs} epochs {training / 60:.1f} min, "
        f"calibrate+evaluate {evaluation / 60:.1f} min; total {total_s / 60:.0f} min"
    )


if __name__ == "__main__":
    main()

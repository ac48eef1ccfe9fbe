"""Decide the next pins: the inflow listing up to now (less params.yaml inflow.settle_s) and the model in prod.

Used by `make retrain` and by the cluster's snapshot task; both then skip the run when fewer than
inflow.min_new_samples new images arrived since the last pinned cut-off.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from mlcore.data.inflow import before, listing_digest, new_images
from mlcore.ops.registry import champion
from mlcore.params import InflowParams
from mlcore.pins import DEFAULT_PINS_PATH, InflowPin, Pins
from mlcore.storage.inflow import InflowBucket


@dataclass(frozen=True)
class NextPins:
    pins: Pins
    previous: Pins
    new_images: int

    def worth_a_run(self, inflow: InflowParams) -> bool:
        return self.new_images >= inflow.min_new_samples

    def describe(self, inflow: InflowParams) -> str:
        since = self.previous.inflow.cutoff
        return (f"{self.new_images} new image(s) since {since.isoformat() if since else 'the first snapshot'} "
                f"(inflow.min_new_samples {inflow.min_new_samples}); the snapshot up to "
                f"{self.pins.inflow.cutoff.isoformat()} lists {self.pins.inflow.objects} object(s)")  # fmt: skip


def next_pins(inflow: InflowParams, previous: Pins, repo: Path = Path(".")) -> NextPins:
    """Pins for a run starting now, after the `previous` snapshot; the bucket comes from MLCORE_S3_*
    (mlcore/storage/inflow.py), the model in prod from the repository's registry tags."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    cutoff = now - datetime.timedelta(seconds=inflow.settle_s)
    listing = before(InflowBucket.from_environment(inflow.prefixes).list(), cutoff)
    pins = Pins(inflow=InflowPin(cutoff=cutoff, objects=len(listing), listing_sha256=listing_digest(listing)),
                champion=champion(repo))  # fmt: skip
    return NextPins(pins, previous, len(new_images(listing, previous.inflow.cutoff)))


def latest_pins(refs: list[str], repo: Path = Path(".")) -> Pins:
    """Of the pins committed at these refs (those without pins.yaml skipped), the ones with the latest inflow
    cut-off: on the cluster, the last snapshot any run recorded (its branch or its tag)."""
    import subprocess

    import yaml

    found = [Pins()]
    for ref in refs:
        shown = subprocess.run(["git", "show", f"{ref}:{DEFAULT_PINS_PATH}"], cwd=repo, capture_output=True, text=True)
        if shown.returncode == 0:
            found.append(Pins.model_validate(yaml.safe_load(shown.stdout) or {}))
    oldest = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return max(found, key=lambda pins: pins.inflow.cutoff or oldest)

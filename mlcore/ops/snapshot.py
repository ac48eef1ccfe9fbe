"""Decide the next pins: the inflow listed up to now (less params.yaml inflow.settle_s) and the model in prod.

Used by `make retrain` and by the cluster's snapshot task; both skip the run when fewer than
inflow.min_new_samples images are new against the previous snapshot's listing, and otherwise store the listing
in the bucket (mlcore/storage/inflow.py), where the inflow stage reads exactly what it names.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from mlcore.commands import git_show
from mlcore.data.inflow import Listed, before, listing_digest, new_images
from mlcore.ops.registry import champion
from mlcore.params import InflowParams
from mlcore.pins import DEFAULT_PINS_PATH, InflowPin, Pins
from mlcore.storage.inflow import InflowBucket

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NextPins:
    pins: Pins
    previous: Pins
    new_images: int
    listing: list[Listed]
    bucket: InflowBucket

    def worth_a_run(self, inflow: InflowParams) -> bool:
        return self.new_images >= inflow.min_new_samples

    def pin_listing(self) -> None:
        """Store the listing the pins name (only for a run that goes ahead)."""
        self.bucket.save_listing(self.listing)

    def describe(self, inflow: InflowParams) -> str:
        since = self.previous.inflow.cutoff
        return (
            f"{self.new_images} new image(s) since {since.isoformat() if since else 'the first snapshot'} "
            f"(inflow.min_new_samples {inflow.min_new_samples}); the snapshot up to "
            f"{self.pins.inflow.cutoff.isoformat()} lists {self.pins.inflow.objects} object(s)"
        )


def next_pins(inflow: InflowParams, previous: Pins, repo: Path = Path(".")) -> NextPins:
    """Pins for a run starting now, after the `previous` snapshot; the bucket comes from MLCORE_S3_*, the model
    in prod from the repository's registry tags."""
    cutoff = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(seconds=inflow.settle_s)
    bucket = InflowBucket.from_environment(inflow.prefixes)
    listing = before(bucket.list(), cutoff)
    held = bucket.load_listing(previous.inflow.listing_sha256) if previous.inflow.listing_sha256 else []
    pins = Pins(
        inflow=InflowPin(cutoff=cutoff, objects=len(listing), listing_sha256=listing_digest(listing)),
        champion=champion(repo),
    )
    return NextPins(pins, previous, len(new_images(listing, held)), listing, bucket)


def latest_pins(refs: list[str], repo: Path = Path(".")) -> Pins:
    """Of the pins committed at these refs, the ones with the latest inflow cut-off: on the cluster, the last
    snapshot any run recorded (on its branch or tag). Refs without pins.yaml, or with one this code cannot read
    (an older schema), are skipped."""
    found = [Pins()]
    for ref in refs:
        shown = git_show(ref, DEFAULT_PINS_PATH, cwd=repo)
        if shown is None:
            continue
        try:
            found.append(Pins.model_validate(yaml.safe_load(shown) or {}))
        except (ValidationError, yaml.YAMLError) as exc:
            log.warning("%s:%s skipped: %s", ref, DEFAULT_PINS_PATH, exc)
    oldest = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return max(found, key=lambda pins: pins.inflow.cutoff or oldest)

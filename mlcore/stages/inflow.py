"""inflow: snapshot the new samples pinned in pins.yaml into data/inflow (content-addressed, deduplicated,
checked, with a manifest of what was taken and why anything was not).

pins.yaml names the listing by its sha256; the listing itself (key, size, ETag of every object) is stored in the
bucket under that name, so the stage reads exactly those objects, each checked against its ETag, whatever
arrived or was resent since. Replays restore the stage's output and never read the bucket.
"""

from __future__ import annotations

import logging

from mlcore.data.inflow import MANIFEST, Snapshot, take
from mlcore.io import atomic_dir, canonical_json
from mlcore.params import Params
from mlcore.pins import load_pins
from mlcore.stages._common import StageError
from mlcore.stages.paths import INFLOW_DIR
from mlcore.storage.inflow import InflowBucket, InflowError

log = logging.getLogger(__name__)


def run(params: Params) -> None:
    pin = load_pins().inflow
    with atomic_dir(INFLOW_DIR) as staging:

        def write(name: str, data: bytes) -> None:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)

        snapshot, listing = Snapshot(write), []
        if pin.cutoff is not None:
            try:
                bucket = InflowBucket.from_environment(params.inflow.prefixes)
                listing = bucket.load_listing(pin.listing_sha256)
                snapshot = take(listing, bucket.read, write)
            except InflowError as exc:
                raise StageError(
                    f"{exc}. The pinned inflow must stay as it was listed: inflow prefixes are "
                    "append-only (`make retrain` pins a new snapshot)"
                ) from exc
        manifest = snapshot.manifest(pin.cutoff, pin.listing_sha256, len(listing))
        (staging / MANIFEST).write_text(canonical_json(manifest))
    log.info("inflow: %s", manifest["summary"])

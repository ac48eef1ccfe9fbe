"""inflow: snapshot the new samples pinned in pins.yaml into data/inflow (content-addressed, deduplicated,
checked, with a manifest of what was taken and why anything was not)."""

from __future__ import annotations

import logging

from mlcore.data.inflow import MANIFEST, Snapshot, before, listing_digest, take
from mlcore.io import atomic_dir, canonical_json
from mlcore.params import Params
from mlcore.pins import PinsError, load_pins
from mlcore.stages._common import StageError, run_stage
from mlcore.stages.paths import INFLOW_DIR
from mlcore.storage.inflow import InflowBucket, InflowError

log = logging.getLogger(__name__)


def inflow_stage(params: Params) -> None:
    try:
        pin = load_pins().inflow
    except PinsError as exc:
        raise StageError(str(exc)) from exc
    snapshot, listing = Snapshot(), []
    if pin.cutoff is not None:
        try:
            bucket = InflowBucket.from_environment(params.inflow.prefixes)
            listing = before(bucket.list(), pin.cutoff)
            if listing_digest(listing) != pin.listing_sha256 or len(listing) != pin.objects:
                raise StageError(
                    f"the inflow before {pin.cutoff.isoformat()} is not what pins.yaml pinned ({len(listing)} objects "
                    f"now, {pin.objects} then): objects under {', '.join(params.inflow.prefixes)} were deleted or "
                    "replaced. Inflow prefixes must be append-only; `make retrain` pins a new snapshot"
                )
            snapshot = take(listing, bucket.read)
        except InflowError as exc:
            raise StageError(str(exc)) from exc
    with atomic_dir(INFLOW_DIR) as staging:
        for name, data in sorted(snapshot.files.items()):
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        manifest = snapshot.manifest(pin.cutoff, pin.listing_sha256, len(listing))
        (staging / MANIFEST).write_text(canonical_json(manifest))
    log.info("inflow: %s", manifest["summary"])


if __name__ == "__main__":
    run_stage(inflow_stage)

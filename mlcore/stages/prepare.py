"""prepare: validate, convert, resize and split the archives and the inflow snapshot into TFRecord shards +
manifest (with the drift signals' histograms) + report."""

from __future__ import annotations

import logging

from mlcore.data.inflow import ID_PREFIX, read_snapshot
from mlcore.data.oxford import CLASS_NAMES, ArchiveError
from mlcore.data.prepare import class_pixel_frequencies, collect, statistics
from mlcore.data.tfrecords import serialize, write_shards
from mlcore.io import atomic_dir, canonical_json
from mlcore.params import Params
from mlcore.stages._common import StageError, archive_origin
from mlcore.stages.paths import INFLOW_DIR, PREPARED_DIR, RAW_DIR

log = logging.getLogger(__name__)


def run(params: Params) -> None:
    settings = params.prepare
    try:
        collected = collect(RAW_DIR, settings.image_size, read_snapshot(INFLOW_DIR))
    except ArchiveError as exc:
        raise StageError(f"{exc}; it comes from {archive_origin(params, exc.archive.name)}") from exc
    except FileNotFoundError as exc:
        raise StageError(f"{exc.filename}: missing; the inflow stage makes it (`dvc repro inflow`)") from exc
    summary = collected.summary()
    bad_fraction = collected.quarantined / max(collected.seen, 1)
    if collected.seen == 0 or bad_fraction > settings.max_bad_fraction:
        rejected = [row for row in collected.report if row["outcome"] == "quarantined"]
        worst = "\n".join(f"  {row['file']}: {row['reasons'][-1]}" for row in rejected[:20])
        raise StageError(
            f"{RAW_DIR}: {collected.quarantined} of {collected.seen} images unusable "
            f"({bad_fraction:.1%} > prepare.max_bad_fraction {settings.max_bad_fraction:.1%}):\n{worst}\n"
            "Check the archives, or raise prepare.max_bad_fraction in params.yaml if this is expected."
        )
    manifest = {"image_size": settings.image_size, "classes": list(CLASS_NAMES), "quality": summary, "splits": {}}
    with atomic_dir(PREPARED_DIR) as staging:
        for split, samples in collected.by_split.items():
            records = [serialize(s.sample_id, s.image, s.labels) for s in samples]
            shards = write_shards(staging, split, records, settings.samples_per_shard)
            manifest["splits"][split] = {
                "count": len(samples),
                "shards": shards,
                "inflow": sum(sample.sample_id.startswith(ID_PREFIX) for sample in samples),
                "class_pixel_frequency": class_pixel_frequencies(samples),
                "statistics": statistics(samples),
            }
        (staging / "manifest.json").write_text(canonical_json(manifest))
        (staging / "report.json").write_text(canonical_json({"summary": summary, "files": collected.report}))
    log.info("prepared %s", {s: m["count"] for s, m in manifest["splits"].items()})
    log.info("quality: %s", summary)

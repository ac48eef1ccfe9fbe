"""Turn the two Oxford-format archives, and the inflow snapshot's samples, into resized, validated, split samples
plus a quality report."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlcore import drift
from mlcore.data.inflow import InflowSample
from mlcore.data.oxford import ANNOTATIONS_ARCHIVE, CLASS_NAMES, IMAGES_ARCHIVE, iter_images, read_annotations
from mlcore.data.quality import check_sample
from mlcore.data.split import SPLITS, split_of
from mlcore.data.transform import resize_pair


@dataclass(frozen=True)
class Sample:
    sample_id: str
    image: np.ndarray  # uint8 [S, S, 3]
    labels: np.ndarray  # uint8 [S, S], class indices
    long_side: int  # of the image as it came, in pixels (a drift signal)


@dataclass
class Collected:
    by_split: dict[str, list[Sample]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    report: list[dict] = field(default_factory=list)  # one row per converted or quarantined file
    seen: int = 0
    inflow: int = 0  # samples taken from the inflow snapshot

    @property
    def quarantined(self) -> int:
        return sum(row["outcome"] == "quarantined" for row in self.report)

    def add(self, sample_id: str, file: str, image_bytes: bytes, trimap_bytes: bytes | None, image_size: int) -> bool:
        """Check, convert and resize one sample into its split; False (and a report row) if quarantined."""
        checked = check_sample(sample_id, image_bytes, trimap_bytes)
        if checked.rejection is not None:
            reasons = [*checked.conversions, checked.rejection]
            self.report.append({"file": file, "outcome": "quarantined", "reasons": reasons})
            return False
        if checked.conversions:
            self.report.append({"file": file, "outcome": "converted", "reasons": checked.conversions})
        image, labels = resize_pair(checked.image, checked.trimap, image_size)
        self.by_split[split_of(sample_id)].append(Sample(sample_id, image, labels, max(checked.image.size)))
        return True

    def summary(self) -> dict:
        outcomes = Counter(reason.split(":")[0] for row in self.report for reason in row["reasons"])
        return {
            "images_seen": self.seen,
            "usable": self.seen - self.quarantined,
            "quarantined": self.quarantined,
            "converted": sum(row["outcome"] == "converted" for row in self.report),
            "inflow": self.inflow,
            "inflow_duplicates_of_oxford": sum(row["outcome"] == "duplicate" for row in self.report),
            "by_reason": dict(sorted(outcomes.items())),
        }


def collect(raw_dir: Path, image_size: int, inflow: Iterable[InflowSample] = ()) -> Collected:
    """Check, convert and resize every image, the Oxford archives' then the inflow's; each split's samples are
    sorted by id. An inflow image byte-identical to an Oxford one is left out (reported as a duplicate): it is
    already in its split."""
    annotations = read_annotations(raw_dir / ANNOTATIONS_ARCHIVE)
    collected = Collected()
    found = set()
    oxford_images = {}  # sha256 -> id
    for sample_id, image_bytes in iter_images(raw_dir / IMAGES_ARCHIVE):
        collected.seen += 1
        found.add(sample_id)
        oxford_images.setdefault(hashlib.sha256(image_bytes).hexdigest(), sample_id)
        file = f"images/{sample_id}.jpg"
        collected.add(sample_id, file, image_bytes, annotations.trimaps.get(sample_id), image_size)
    # samples the annotations promise but the images archive lacks: quarantined, and counted as seen
    for sample_id in sorted(annotations.samples.keys() - found):
        collected.seen += 1
        collected.report.append(
            {
                "file": f"images/{sample_id}.jpg",
                "outcome": "quarantined",
                "reasons": ["missing_image: listed in annotations/list.txt"],
            }
        )
    for sample_id in sorted(annotations.trimaps.keys() - found - annotations.samples.keys()):
        collected.seen += 1
        collected.report.append(
            {
                "file": f"annotations/trimaps/{sample_id}.png",
                "outcome": "quarantined",
                "reasons": ["missing_image: a trimap without an image"],
            }
        )
    for sample in inflow:
        file = f"inflow/images/{sample.sample_id}.jpg"
        if (same := oxford_images.get(sample.image_sha256)) is not None:
            collected.report.append({"file": file, "outcome": "duplicate", "reasons": [f"duplicate_of: {same}"]})
        elif collected.add(sample.sample_id, file, sample.image, sample.trimap, image_size):
            collected.inflow += 1
    for samples in collected.by_split.values():
        samples.sort(key=lambda sample: sample.sample_id)
    collected.report.sort(key=lambda row: row["file"])
    return collected


def class_pixel_frequencies(samples: list[Sample]) -> dict[str, float]:
    counts = np.zeros(len(CLASS_NAMES), np.int64)
    for sample in samples:
        counts += np.bincount(sample.labels.ravel(), minlength=len(CLASS_NAMES))
    total = max(int(counts.sum()), 1)
    return {name: float(count / total) for name, count in zip(CLASS_NAMES, counts, strict=True)}


def statistics(samples: list[Sample]) -> dict[str, dict]:
    """The drift signals' histograms (mlcore/drift.py) over the samples: what served traffic is compared with."""
    values = {
        "brightness": [drift.brightness(sample.image) for sample in samples],
        "long_side": [sample.long_side for sample in samples],
        "pet_fraction": [drift.pet_fraction(sample.labels) for sample in samples],
    }
    return {
        name: {"edges": list(edges), "counts": drift.histogram(values[name], edges)}
        for name, edges in drift.SIGNALS.items()
    }

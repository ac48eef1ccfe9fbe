"""Turn the two Oxford-format archives into resized, validated, split samples plus a quality report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlcore.data.oxford import ANNOTATIONS_ARCHIVE, CLASS_NAMES, IMAGES_ARCHIVE, iter_images, read_annotations
from mlcore.data.quality import check_sample
from mlcore.data.split import SPLITS, split_of
from mlcore.data.transform import resize_pair


@dataclass(frozen=True)
class Sample:
    sample_id: str
    image: np.ndarray  # uint8 [S, S, 3]
    labels: np.ndarray  # uint8 [S, S], class indices


@dataclass
class Collected:
    by_split: dict[str, list[Sample]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    report: list[dict] = field(default_factory=list)  # one row per converted or quarantined file
    seen: int = 0

    @property
    def quarantined(self) -> int:
        return sum(row["outcome"] == "quarantined" for row in self.report)

    def summary(self) -> dict:
        outcomes = Counter(reason.split(":")[0] for row in self.report for reason in row["reasons"])
        return {
            "images_seen": self.seen,
            "usable": self.seen - self.quarantined,
            "quarantined": self.quarantined,
            "converted": sum(row["outcome"] == "converted" for row in self.report),
            "by_reason": dict(sorted(outcomes.items())),
        }


def collect(raw_dir: Path, image_size: int) -> Collected:
    """Check, convert and resize every image; each split's samples are sorted by id."""
    annotations = read_annotations(raw_dir / ANNOTATIONS_ARCHIVE)
    collected = Collected()
    found = set()
    for sample_id, image_bytes in iter_images(raw_dir / IMAGES_ARCHIVE):
        collected.seen += 1
        found.add(sample_id)
        checked = check_sample(sample_id, image_bytes, annotations.trimaps.get(sample_id))
        file = f"images/{sample_id}.jpg"
        if checked.rejection is not None:
            reasons = [*checked.conversions, checked.rejection]
            collected.report.append({"file": file, "outcome": "quarantined", "reasons": reasons})
            continue
        if checked.conversions:
            collected.report.append({"file": file, "outcome": "converted", "reasons": checked.conversions})
        image, labels = resize_pair(checked.image, checked.trimap, image_size)
        collected.by_split[split_of(sample_id)].append(Sample(sample_id, image, labels))
    # samples the annotations promise but the images archive lacks: quarantined, and counted as seen
    for sample_id in sorted(annotations.samples.keys() - found):
        collected.seen += 1
        collected.report.append({"file": f"images/{sample_id}.jpg", "outcome": "quarantined",
                                 "reasons": ["missing_image: listed in annotations/list.txt"]})  # fmt: skip
    for sample_id in sorted(annotations.trimaps.keys() - found - annotations.samples.keys()):
        collected.seen += 1
        collected.report.append({"file": f"annotations/trimaps/{sample_id}.png", "outcome": "quarantined",
                                 "reasons": ["missing_image: a trimap without an image"]})  # fmt: skip
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

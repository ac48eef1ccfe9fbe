"""Turn the two Oxford-format archives, and the inflow snapshot's samples, into resized, validated, split samples
plus a quality report."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

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

    def convert(self, sample_id: str, file: str, image: bytes, trimap: bytes | None, image_size: int) -> Sample | None:
        """Check, convert and resize one sample; None (and a report row) if quarantined."""
        checked = check_sample(sample_id, image, trimap)
        if checked.rejection is not None:
            reasons = [*checked.conversions, checked.rejection]
            self.report.append({"file": file, "outcome": "quarantined", "reasons": reasons})
            return None
        if checked.conversions:
            self.report.append({"file": file, "outcome": "converted", "reasons": checked.conversions})
        pixels, labels = resize_pair(checked.image, checked.trimap, image_size)
        return Sample(sample_id, pixels, labels, max(checked.image.size))

    def add(self, sample: Sample | None) -> None:
        if sample is not None:
            self.by_split[split_of(sample.sample_id)].append(sample)

    def summary(self) -> dict:
        outcomes = Counter(reason.split(":")[0] for row in self.report for reason in row["reasons"])
        return {
            "images_seen": self.seen,
            "usable": self.seen - self.quarantined,
            "quarantined": self.quarantined,
            "converted": sum(row["outcome"] == "converted" for row in self.report),
            "inflow": self.inflow,
            "inflow_duplicates": sum(row["outcome"] == "duplicate" for row in self.report),
            "by_reason": dict(sorted(outcomes.items())),
        }


def collect(raw_dir: Path, image_size: int, inflow: Iterable[InflowSample] = ()) -> Collected:
    """Check, convert and resize every image, the Oxford archives' then the inflow's; each split's samples are
    sorted by id. An inflow image that is an Oxford one or an earlier inflow one, byte for byte or once resized
    (feedback re-encodes what it is sent), is left out and reported as a duplicate: it is already in its split,
    and a test image sent back as feedback must not come back as a training sample."""
    annotations = read_annotations(raw_dir / ANNOTATIONS_ARCHIVE)
    collected = Collected()
    found = set()
    oxford_images = {}  # sha256 -> id
    for sample_id, image_bytes in iter_images(raw_dir / IMAGES_ARCHIVE):
        collected.seen += 1
        found.add(sample_id)
        oxford_images.setdefault(hashlib.sha256(image_bytes).hexdigest(), sample_id)
        file = f"images/{sample_id}.jpg"
        collected.add(collected.convert(sample_id, file, image_bytes, annotations.trimaps.get(sample_id), image_size))
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
    known = Fingerprints([sample for samples in collected.by_split.values() for sample in samples])
    for inflow_sample in inflow:
        file = f"inflow/images/{inflow_sample.sample_id}.jpg"
        if (same := oxford_images.get(inflow_sample.image_sha256)) is not None:
            collected.report.append({"file": file, "outcome": "duplicate", "reasons": [f"duplicate_of: {same}"]})
            continue
        sample = collected.convert(inflow_sample.sample_id, file, inflow_sample.image, inflow_sample.trimap, image_size)
        if sample is None:
            continue
        if (near := known.nearest(sample)) is not None:
            collected.report.append({"file": file, "outcome": "duplicate", "reasons": [f"near_duplicate_of: {near}"]})
            continue
        known.add(sample)
        collected.add(sample)
        collected.inflow += 1
    for samples in collected.by_split.values():
        samples.sort(key=lambda sample: sample.sample_id)
    collected.report.sort(key=lambda row: row["file"])
    return collected


FINGERPRINT_SIDE = 16  # a difference hash of 16 x 16 bits
NEAR_DUPLICATE_BITS = 32  # measured on the sample data: JPEG re-encoding flips at most 17, other images 52 or more


def fingerprint(pixels: np.ndarray) -> np.ndarray:
    """A difference hash of the resized image (packed bits): near-identical images have near-identical hashes."""
    side = FINGERPRINT_SIDE
    gray = Image.fromarray(pixels).convert("L").resize((side + 1, side), Image.Resampling.BILINEAR)
    values = np.asarray(gray, np.int16)
    return np.packbits(values[:, 1:] > values[:, :-1])


class Fingerprints:
    """The samples taken so far, to find an image's near duplicate among them."""

    def __init__(self, samples: list[Sample]):
        self.ids = [sample.sample_id for sample in samples]
        self.hashes = np.array([fingerprint(sample.image) for sample in samples], np.uint8).reshape(len(samples), -1)

    def nearest(self, sample: Sample) -> str | None:
        """The id of a taken sample within NEAR_DUPLICATE_BITS of this one's fingerprint (the closest), or None."""
        if not self.ids:
            return None
        distances = np.unpackbits(self.hashes ^ fingerprint(sample.image), axis=1).sum(axis=1)
        closest = int(distances.argmin())
        if distances[closest] > NEAR_DUPLICATE_BITS:
            return None
        return f"{self.ids[closest]} ({distances[closest]} of {FINGERPRINT_SIDE**2} bits differ)"

    def add(self, sample: Sample) -> None:
        self.ids.append(sample.sample_id)
        self.hashes = np.vstack([self.hashes, fingerprint(sample.image)[None]])


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

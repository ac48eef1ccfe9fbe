"""New samples (served feedback, drops of Oxford-layout files) turned into a snapshot: content-addressed,
deduplicated by image hash, checked by prepare's own quality checks, every object accounted for.

A listing holds <prefix>/images/<id>.jpg and <prefix>/annotations/trimaps/<id>.png objects. A sample's id in
the snapshot is `inflow_` + the first 16 hex digits of its image's sha256: the same image under two keys (a
resend, a drop of a file already sent) is one sample, and no inflow id can collide with an Oxford id.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mlcore.data.quality import check_sample

IMAGES = "images"
TRIMAPS = "annotations/trimaps"
QUARANTINE = "quarantine"
MANIFEST = "manifest.json"
ID_PREFIX = "inflow_"


@dataclass(frozen=True)
class Listed:
    """One object of a bucket listing (a stored listing keeps no times: they are not what is pinned)."""

    key: str
    size: int
    etag: str
    modified: datetime.datetime | None = None


def sample_key(key: str) -> tuple[str, str, str] | None:
    """(prefix, kind 'image' or 'trimap', id) for <prefix>/images/<id>.jpg or <prefix>/annotations/trimaps/<id>.png;
    None for anything else (feedback's metadata, stray files)."""
    path = PurePosixPath(key)
    if path.suffix == ".jpg" and path.parent.name == "images":
        return str(path.parent.parent), "image", path.stem
    if path.suffix == ".png" and path.parent.as_posix().endswith("/" + TRIMAPS):
        return str(path.parent.parent.parent), "trimap", path.stem
    return None


def kind_of(key: str) -> str | None:
    """'image', 'trimap', or None for an object that is not a sample's."""
    found = sample_key(key)
    return found[1] if found else None


def sample_objects(listing: list[Listed]) -> list[Listed]:
    """The images and trimaps of a listing, by key."""
    return sorted((item for item in listing if sample_key(item.key)), key=lambda item: item.key)


def before(listing: list[Listed], cutoff: datetime.datetime) -> list[Listed]:
    return [item for item in listing if item.modified < cutoff]


def listing_text(listing: list[Listed]) -> str:
    """The sorted (key, size, ETag) lines that pin a snapshot: stored as they are, named by their sha256."""
    return "".join(f"{item.key}\t{item.size}\t{item.etag}\n" for item in sorted(listing, key=lambda i: i.key))


def listing_digest(listing: list[Listed]) -> str:
    """sha256 of the listing's lines: another object, or one changed, gives another digest."""
    return hashlib.sha256(listing_text(listing).encode()).hexdigest()


def parse_listing(text: str) -> list[Listed]:
    rows = (line.split("\t") for line in text.splitlines())
    return [Listed(key, int(size), etag) for key, size, etag in rows]


def new_images(listing: list[Listed], previous: list[Listed]) -> list[Listed]:
    """Images of `listing` that the previous snapshot's listing did not hold as they are (a resend of the same
    bytes is not new; a replaced file is)."""
    held = {(item.key, item.etag) for item in previous}
    return [item for item in listing if kind_of(item.key) == "image" and (item.key, item.etag) not in held]


@dataclass
class Snapshot:
    """What a snapshot took and, for every other object, why not; `write(relative path, bytes)` stores a file of
    it (into the stage's staging folder), so no more than one sample is held in memory."""

    write: Callable[[str, bytes], None]
    samples: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        reasons = Counter(row["reason"].split(":")[0] for row in self.quarantined)
        return {
            "taken": len(self.samples),
            "duplicates": len(self.duplicates),
            "quarantined": len(self.quarantined),
            "by_reason": dict(sorted(reasons.items())),
        }

    def manifest(self, cutoff: datetime.datetime | None, digest: str | None, objects: int) -> dict:
        return {
            "cutoff": cutoff.isoformat() if cutoff else None,
            "listing_sha256": digest,
            "objects": objects,
            "summary": self.summary(),
            "samples": self.samples,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
        }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def take(listing: list[Listed], read: Callable[[Listed], bytes], write: Callable[[str, bytes], None]) -> Snapshot:
    """Read every image and its trimap, check them as prepare does, keep the first of equal images (by key)."""
    snapshot = Snapshot(write)
    objects = sample_objects(listing)
    images = [item for item in objects if kind_of(item.key) == "image"]
    trimaps = {(p, i): item for item in objects for p, kind, i in [sample_key(item.key)] if kind == "trimap"}
    kept: dict[str, dict] = {}  # image sha256 -> sample row
    for image in images:
        prefix, _, sample_id = sample_key(image.key)
        trimap = trimaps.pop((prefix, sample_id), None)
        image_bytes = read(image)
        trimap_bytes = read(trimap) if trimap else None
        digest = _sha256(image_bytes)
        checked = check_sample(sample_id, image_bytes, trimap_bytes)
        if checked.rejection is not None:
            _quarantine(snapshot, image, trimap, image_bytes, trimap_bytes, checked.rejection)
        elif digest in kept:
            same = kept[digest]
            snapshot.duplicates.append(
                {
                    "image": image.key,
                    "same_as": same["id"],
                    "same_trimap": _sha256(trimap_bytes) == same["trimap_sha256"],
                }
            )
        else:
            row = {
                "id": f"{ID_PREFIX}{digest[:16]}",
                "image": image.key,
                "trimap": trimap.key,
                "image_sha256": digest,
                "trimap_sha256": _sha256(trimap_bytes),
                "conversions": checked.conversions,
            }
            kept[digest] = row
            snapshot.samples.append(row)
            write(f"{IMAGES}/{row['id']}.jpg", image_bytes)
            write(f"{TRIMAPS}/{row['id']}.png", trimap_bytes)
    for trimap in sorted(trimaps.values(), key=lambda item: item.key):
        _quarantine(snapshot, None, trimap, None, read(trimap), "missing_image: a trimap without an image")
    return snapshot


def _quarantine(
    snapshot: Snapshot,
    image: Listed | None,
    trimap: Listed | None,
    image_bytes: bytes | None,
    trimap_bytes: bytes | None,
    reason: str,
) -> None:
    """Keep a rejected sample's bytes in quarantine/ (by content), with the reason, for someone to look at."""
    row = {"image": image.key if image else None, "trimap": trimap.key if trimap else None, "reason": reason}
    for name, item, data in (("image", image, image_bytes), ("trimap", trimap, trimap_bytes)):
        if item is not None:
            row[f"{name}_file"] = f"{QUARANTINE}/{_sha256(data)[:16]}{PurePosixPath(item.key).suffix}"
            snapshot.write(row[f"{name}_file"], data)
    snapshot.quarantined.append(row)


@dataclass(frozen=True)
class InflowSample:
    sample_id: str
    image: bytes
    trimap: bytes
    image_sha256: str


def read_snapshot(folder: Path) -> Iterator[InflowSample]:
    """The samples a snapshot took, by id; read lazily (prepare reads the archives first)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    for row in sorted(manifest["samples"], key=lambda row: row["id"]):
        image = (folder / IMAGES / f"{row['id']}.jpg").read_bytes()
        trimap = (folder / TRIMAPS / f"{row['id']}.png").read_bytes()
        yield InflowSample(row["id"], image, trimap, row["image_sha256"])

"""The Oxford-IIIT Pet archive layout, shared by the real download and the built-in sample.

images.tar.gz holds images/<id>.jpg; annotations.tar.gz holds annotations/list.txt (six comment lines,
then `<id> <class id> <species> <breed id>`), trainval.txt, test.txt and trimaps/<id>.png with
1 = pet, 2 = background, 3 = border.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IMAGES_ARCHIVE = "images.tar.gz"
ANNOTATIONS_ARCHIVE = "annotations.tar.gz"
CLASS_NAMES = ("pet", "background", "border")
TRIMAP_VALUES = (1, 2, 3)  # trimap value v is class index v - 1
LIST_HEADER = (
    "#Image CLASS-ID SPECIES BREED ID",
    "#ID: 1:37 Class ids",
    "#SPECIES: 1:Cat 2:Dog",
    "#BREED ID: 1-25:Cat 1:12:Dog",
    "#All images with 1st letter as captial are cat images",
    "#images with small first letter are dog images",
)
SPECIES = {1: "cat", 2: "dog"}


@dataclass(frozen=True)
class SampleInfo:
    """One row of annotations/list.txt."""

    sample_id: str
    class_id: int
    species: str
    breed_id: int

    @property
    def breed(self) -> str:
        return self.sample_id.rsplit("_", 1)[0]


def parse_list(text: str, source: str = "annotations/list.txt") -> dict[str, SampleInfo]:
    """Parse list.txt; comment lines start with '#'. A malformed row names its line number."""
    rows: dict[str, SampleInfo] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4 or not all(f.isdigit() for f in fields[1:]):
            raise ValueError(f"{source}:{number}: expected '<id> <class> <species> <breed>', got {line!r}")
        class_id, species, breed_id = (int(f) for f in fields[1:])
        if species not in SPECIES:
            raise ValueError(f"{source}:{number}: species must be 1 (cat) or 2 (dog), got {species}")
        rows[fields[0]] = SampleInfo(fields[0], class_id, SPECIES[species], breed_id)
    return rows


def _is_payload(name: str, folder: str, suffix: str) -> bool:
    """True for folder/<id><suffix>, skipping macOS '._' resource forks shipped in the real archive."""
    path = PurePosixPath(name)
    return path.parent.name == folder and path.suffix == suffix and not path.name.startswith("._")


class ArchiveError(ValueError):
    """An archive that is not a complete gzip-compressed tar file; the message names the file."""

    def __init__(self, archive: Path, detail: str):
        super().__init__(f"{archive}: not a complete .tar.gz archive ({detail})")
        self.archive = archive


@contextmanager
def _readable(archive: Path) -> Iterator[None]:
    """Turn what tarfile, gzip and zlib raise for a damaged or foreign file into one error naming it."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        detail = "it ends before the end of the archive" if isinstance(exc, EOFError) else str(exc)
        raise ArchiveError(archive, detail) from exc


def check_archive(archive: Path) -> int:
    """Read `archive` to its end (every member's data, so a truncated or corrupt stream fails here, not in a
    later stage); returns the number of members."""
    members = 0
    with _readable(archive), tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            members += 1
            if member.isfile():
                _read_member(tar, member)
    return members


@dataclass(frozen=True)
class Annotations:
    samples: dict[str, SampleInfo]
    trimaps: dict[str, bytes]


def read_annotations(archive: Path) -> Annotations:
    """Load list.txt and every trimap PNG (about 19 MB for the real set) into memory."""
    samples: dict[str, SampleInfo] = {}
    trimaps: dict[str, bytes] = {}
    with _readable(archive), tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            if PurePosixPath(member.name).as_posix().endswith("annotations/list.txt"):
                samples = parse_list(_read_member(tar, member).decode(), f"{archive}:{member.name}")
            elif _is_payload(member.name, "trimaps", ".png"):
                trimaps[PurePosixPath(member.name).stem] = _read_member(tar, member)
    if not samples:
        raise ValueError(f"{archive}: no annotations/list.txt inside; is this the annotations archive?")
    return Annotations(samples, trimaps)


def iter_images(archive: Path) -> Iterator[tuple[str, bytes]]:
    """Stream (sample id, raw file bytes) for every images/<id>.jpg, in archive order."""
    with _readable(archive), tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            if member.isfile() and _is_payload(member.name, "images", ".jpg"):
                yield PurePosixPath(member.name).stem, _read_member(tar, member)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    assert handle is not None  # regular files always have a payload
    return handle.read()

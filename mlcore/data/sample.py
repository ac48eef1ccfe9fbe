"""A seeded synthetic stand-in for the Oxford-IIIT Pet archives, in exactly their layout.

Each image is a pet-like shape (body, head, ears, smooth fur shading) over a textured background;
its trimap marks pet, background and a border band around the outline, as the real trimaps do.
With `include_quirks`, a few files reproduce the real set's defects (CMYK, grayscale, PNG data
behind a .jpg name, RGBA, a corrupt file, a trimap of the wrong size, an image without a trimap,
.mat files and macOS resource forks) so that the prepare stage's handling of each is exercised.
The archives are byte-stable: fixed member order, times, owners and gzip header.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mlcore.data.oxford import ANNOTATIONS_ARCHIVE, IMAGES_ARCHIVE, LIST_HEADER

CAT_BREEDS = (
    "Abyssinian",
    "Bengal",
    "Birman",
    "Bombay",
    "British_Shorthair",
    "Egyptian_Mau",
    "Maine_Coon",
    "Persian",
    "Ragdoll",
    "Russian_Blue",
    "Siamese",
    "Sphynx",
)
DOG_BREEDS = (
    "american_bulldog",
    "american_pit_bull_terrier",
    "basset_hound",
    "beagle",
    "boxer",
    "chihuahua",
    "english_cocker_spaniel",
    "english_setter",
    "german_shorthaired",
    "great_pyrenees",
    "havanese",
    "japanese_chin",
    "keeshond",
    "leonberger",
    "miniature_pinscher",
    "newfoundland",
    "pomeranian",
    "pug",
    "saint_bernard",
    "samoyed",
    "scottish_terrier",
    "shiba_inu",
    "staffordshire_bull_terrier",
    "wheaten_terrier",
    "yorkshire_terrier",
)
BREEDS = CAT_BREEDS + DOG_BREEDS
ARCHIVE_MTIME = 1_262_304_000  # 2010-01-01, a fixed time so archives are byte-stable
BORDER_WIDTH = 3
QUIRKS = ("cmyk", "grayscale", "png_as_jpg", "rgba", "corrupt", "trimap_size", "no_trimap")


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A busy background: stripes, checks or coloured noise, with high-frequency detail."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(30, 225, size=3)
    other = rng.uniform(30, 225, size=3)
    kind = rng.integers(3)
    if kind == 0:
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 16)
        weight = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    elif kind == 1:
        cell = int(rng.integers(6, 14))
        weight = ((xx // cell + yy // cell) % 2).astype(np.float32)
    else:
        weight = rng.uniform(0, 1, size=(height, width)).astype(np.float32)
    pixels = base * weight[..., None] + other * (1 - weight[..., None])
    pixels += rng.normal(0, 12, size=(height, width, 3))
    return pixels


def _pet_mask(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """A body ellipse, a head circle and two triangular ears: a pet-like silhouette."""
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy = rng.uniform(0.35, 0.65) * width, rng.uniform(0.45, 0.7) * height
    bw, bh = rng.uniform(0.18, 0.3) * width, rng.uniform(0.12, 0.22) * height
    draw.ellipse((cx - bw, cy - bh, cx + bw, cy + bh), fill=255)
    side = 1 if rng.uniform() < 0.5 else -1
    hx, hy, r = cx + side * bw * 0.8, cy - bh * 0.9, rng.uniform(0.5, 0.8) * bh + 6
    draw.ellipse((hx - r, hy - r, hx + r, hy + r), fill=255)
    for ear in (-1, 1):
        ex = hx + ear * r * 0.6
        draw.polygon([(ex - r * 0.35, hy - r * 0.6), (ex + r * 0.35, hy - r * 0.6), (ex, hy - r * 1.5)], fill=255)
    return mask


def _render(rng: np.random.Generator, min_side: int, max_side: int) -> tuple[Image.Image, Image.Image]:
    """One RGB image and its trimap (1 pet, 2 background, 3 border band)."""
    width, height = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    background = _texture(rng, height, width)
    mask_image = _pet_mask(rng, height, width)
    pet = np.asarray(mask_image) > 127
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    fur = rng.uniform(40, 230, size=3)
    shade = 0.75 + 0.25 * np.cos(xx / width * np.pi * rng.uniform(1, 2)) * np.cos(yy / height * np.pi)
    pet_pixels = fur * shade[..., None] + rng.normal(0, 4, size=(height, width, 3))
    pixels = np.where(pet[..., None], pet_pixels, background)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    grown = np.asarray(mask_image.filter(ImageFilter.MaxFilter(2 * BORDER_WIDTH + 1))) > 127
    shrunk = np.asarray(mask_image.filter(ImageFilter.MinFilter(2 * BORDER_WIDTH + 1))) > 127
    trimap = np.full((height, width), 2, np.uint8)
    trimap[shrunk] = 1
    trimap[grown & ~shrunk] = 3
    return image, Image.fromarray(trimap, "L")


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _image_bytes(image: Image.Image, quirk: str | None) -> bytes:
    """Encode an image as the real archive would hold it, defects included."""
    if quirk == "cmyk":
        return _encode(image.convert("CMYK"), "JPEG", quality=90)
    if quirk == "grayscale":
        return _encode(image.convert("L"), "JPEG", quality=90)
    if quirk == "png_as_jpg":
        return _encode(image, "PNG")
    if quirk == "rgba":
        return _encode(image.convert("RGBA"), "PNG")
    encoded = _encode(image, "JPEG", quality=90)
    if quirk == "corrupt":
        return encoded[: len(encoded) // 3]
    return encoded


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(payload), ARCHIVE_MTIME, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(payload))


def _write_archive(path: Path, members: list[tuple[str, bytes]]) -> None:
    with (
        path.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for name, payload in sorted(members):
            _add(tar, name, payload)


def sample_ids(num_images: int) -> list[str]:
    """Oxford-style ids: '<Breed>_<n>', capitalised for cats, lower case for dogs."""
    return [f"{BREEDS[i % len(BREEDS)]}_{i // len(BREEDS) + 1}" for i in range(num_images)]


def write_sample_archives(
    out_dir: Path, num_images: int, seed: int, include_quirks: bool, min_side: int = 112, max_side: int = 200
) -> None:
    """Write images.tar.gz and annotations.tar.gz into `out_dir`, byte-stable for a given seed."""
    ids = sample_ids(num_images)
    quirks = dict(zip(ids[5::7], QUIRKS, strict=False)) if include_quirks else {}
    images: list[tuple[str, bytes]] = []
    annotations: list[tuple[str, bytes]] = []
    rows = []
    for index, sample_id in enumerate(ids):
        rng = np.random.default_rng([seed, index])
        image, trimap = _render(rng, min_side, max_side)
        quirk = quirks.get(sample_id)
        images.append((f"images/{sample_id}.jpg", _image_bytes(image, quirk)))
        if quirk == "trimap_size":
            trimap = trimap.resize((trimap.width + 9, trimap.height), Image.Resampling.NEAREST)
        if quirk != "no_trimap":
            annotations.append((f"annotations/trimaps/{sample_id}.png", _encode(trimap, "PNG")))
        breed_index = BREEDS.index(sample_id.rsplit("_", 1)[0])
        is_cat = breed_index < len(CAT_BREEDS)
        breed_id = breed_index + 1 if is_cat else breed_index - len(CAT_BREEDS) + 1
        rows.append(f"{sample_id} {breed_index + 1} {1 if is_cat else 2} {breed_id}")
    if include_quirks:  # files the real archives carry that are not samples
        images.append((f"images/{ids[0]}.mat", b"MATLAB 5.0 MAT-file"))
        annotations.append((f"annotations/trimaps/._{ids[0]}.png", b"\x00\x05\x16\x07"))
    half = len(rows) // 2
    annotations += [
        ("annotations/list.txt", "\n".join([*LIST_HEADER, *rows]).encode() + b"\n"),
        ("annotations/trainval.txt", "\n".join(rows[:half]).encode() + b"\n"),
        ("annotations/test.txt", "\n".join(rows[half:]).encode() + b"\n"),
        ("annotations/README", b"Synthetic stand-in for the Oxford-IIIT Pet data set.\n"),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_archive(out_dir / IMAGES_ARCHIVE, images)
    _write_archive(out_dir / ANNOTATIONS_ARCHIVE, annotations)

"""Encoded images in, model-sized arrays out, and the model's output back at each image's own size.

Decoding follows the prepare stage (RGB conversion, Pillow's bilinear resize), so the server sees what the
model was trained and evaluated on. Only JPEG and PNG are opened: the formats the data set has and the
README documents; Pillow would otherwise also parse GIF, TIFF, BMP and a dozen more.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlcore.data.transform import resize_image
from mlcore.serving.errors import RequestError
from mlcore.serving.limits import Limits

FORMATS = ("JPEG", "PNG")
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
MARGIN = 1e-5  # relative: far above the ~1e-7 that float32 interpolation can move two values apart
CHUNK_PIXELS = 1 << 20  # boundary pixels interpolated at once: ~100 MB of index and value arrays


def open_image(data: bytes, where: str, limits: Limits, formats: tuple[str, ...] = FORMATS) -> Image.Image:
    """Read the header only and check the declared size: nothing is decoded yet."""
    if not data:
        raise RequestError(f"{where}: empty")
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:
        raise RequestError(f"{where}: too large ({exc})", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise RequestError(f"{where}: not a readable {' or '.join(formats)} image ({exc})", 415) from None
    if image.mode in WIDE_MODES:
        raise RequestError(
            f"{where}: {image.mode} pixels (16-bit or float) would lose their range in RGB; send an 8-bit image", 415
        )
    limits.check_image(*image.size, where)
    return image


def load(image: Image.Image, where: str) -> Image.Image:
    """Decode an opened image's pixels; a truncated or corrupt upload fails here."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(f"{where}: not a readable {image.format} image ({exc})", 415) from None
    return image


def decode(image: Image.Image, where: str) -> Image.Image:
    """An opened image -> its RGB pixels, the way prepare converts (CMYK, grayscale, RGBA -> RGB)."""
    return load(image, where).convert("RGB")


def to_model_size(images: list[Image.Image] | np.ndarray, size: int) -> np.ndarray:
    """[N, size, size, 3] uint8, a new array, resized as prepare resizes: decoded images straight from Pillow
    (no array in between), pixel arrays already at the model's size copied untouched."""
    return np.stack([_model_sized(image, size) for image in images])


def _model_sized(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image) if image.size == (size, size) else resize_image(image, size)
    return image if image.shape[:2] == (size, size) else resize_image(Image.fromarray(image), size)


def at_size(probabilities: np.ndarray, height: int, width: int) -> np.ndarray:
    """Model-sized probabilities [N, S, S, C] -> [N, height, width, C], bilinear (half-pixel centres)."""
    if probabilities.shape[1:3] == (height, width):
        return probabilities
    import tensorflow as tf

    return tf.image.resize(probabilities, (height, width), method="bilinear").numpy()


@dataclass(frozen=True)
class Taps:
    """TensorFlow's bilinear resize along one axis, half-pixel centres (resize_bilinear_op.cc): each output
    index reads source indices `lower` and `upper` and weighs the upper by `lerp`, all computed in float32."""

    lower: np.ndarray
    upper: np.ndarray
    lerp: np.ndarray

    @classmethod
    def of(cls, out_size: int, in_size: int) -> Taps:
        scale = np.float32(in_size) / np.float32(out_size)
        position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
        floor = np.floor(position)
        upper = np.minimum(np.ceil(position), in_size - 1).astype(np.intp)
        return cls(np.maximum(floor, 0).astype(np.intp), upper, position - floor)


def mask_at_size(probabilities: np.ndarray, height: int, width: int) -> np.ndarray:
    """argmax of the probabilities resized as `at_size` resizes them, without resizing them all.

    Bilinear interpolation is a convex combination of a pixel's four source pixels, so where those four share
    their argmax by a margin that float32 rounding (a few ulps) cannot close, the interpolated pixel has it
    too. Only the pixels of the other cells (near a class boundary, or a near tie) are interpolated, with
    TensorFlow's own float32 operations in its order, so the mask is bit for bit `mask_of(at_size(...))`
    (tests/test_serving.py) in a third of the time, and in bounded memory: CHUNK_PIXELS at a time.
    """
    if probabilities.shape[1:3] == (height, width):
        return mask_of(probabilities)
    rows, columns = Taps.of(height, probabilities.shape[1]), Taps.of(width, probabilities.shape[2])
    labels = mask_of(probabilities)
    certain = _margin(probabilities) > 0
    key = np.where(certain, labels.astype(np.int16), -1)  # an uncertain corner agrees with nothing
    below = np.concatenate([key[:, 1:], key[:, -1:]], axis=1)
    uniform = (key == below) & (key == np.concatenate([key[:, :, 1:], key[:, :, -1:]], axis=2))
    uniform &= (key == np.concatenate([below[:, :, 1:], below[:, :, -1:]], axis=2)) & certain
    mask = labels[:, rows.lower][:, :, columns.lower]
    image, y, x = np.nonzero(~uniform)
    (row_start, row_count), (column_start, column_count) = _runs(rows.lower, y), _runs(columns.lower, x)
    sizes = row_count * column_count
    chunk_of_cell = (np.cumsum(sizes) - sizes) // CHUNK_PIXELS
    for chunk in np.unique(chunk_of_cell):
        cells = chunk_of_cell == chunk
        cell, row, column = _pixels_of_cells(
            row_start[cells], column_start[cells], row_count[cells], column_count[cells]
        )
        _interpolate_mask(probabilities, mask, image[cells][cell], row, column, rows, columns)
    return mask


def _margin(probabilities: np.ndarray) -> np.ndarray:
    """Per pixel: how far the best class leads the second, less MARGIN times the largest magnitude (class by
    class: numpy's reductions over a last axis of 3 are slow)."""
    best, second = probabilities[..., 0].copy(), np.full(probabilities.shape[:-1], -np.inf, np.float32)
    scale = np.abs(best)
    for label in range(1, probabilities.shape[-1]):
        value = probabilities[..., label]
        second = np.maximum(second, np.minimum(best, value))
        best = np.maximum(best, value)
        scale = np.maximum(scale, np.abs(value))
    return best - second - MARGIN * scale


def _runs(lower: np.ndarray, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each source index owns a contiguous run of output indices (`lower` never decreases): start, length."""
    start = np.searchsorted(lower, sources, side="left")
    return start, np.searchsorted(lower, sources, side="right") - start


def _pixels_of_cells(row_start, column_start, row_count, column_count) -> tuple[np.ndarray, ...]:
    """(cell, row, column) of every output pixel of the given cells, each a rectangle of the output."""
    sizes = row_count * column_count
    cell = np.repeat(np.arange(len(sizes)), sizes)
    offset = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return cell, row_start[cell] + offset // column_count[cell], column_start[cell] + offset % column_count[cell]


def _interpolate_mask(probabilities, mask, image, row, column, rows: Taps, columns: Taps) -> None:
    """mask[image, row, column] from the bilinear interpolation, computed as resize_bilinear_op.cc does."""
    y0, y1, y_lerp = rows.lower[row], rows.upper[row], rows.lerp[row][:, None]
    x0, x1, x_lerp = columns.lower[column], columns.upper[column], columns.lerp[column][:, None]
    top_left, top_right = probabilities[image, y0, x0], probabilities[image, y0, x1]
    bottom_left, bottom_right = probabilities[image, y1, x0], probabilities[image, y1, x1]
    top = top_left + (top_right - top_left) * x_lerp
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    mask[image, row, column] = mask_of(top + (bottom - top) * y_lerp)


def mask_of(probabilities: np.ndarray) -> np.ndarray:
    """argmax over the classes as uint8 (ties to the lower label, as argmax), without numpy's int64 index
    array: half the time of `argmax(axis=-1)` over a last axis of 3, and an eighth of its memory."""
    mask = np.zeros(probabilities.shape[:-1], np.uint8)
    best = probabilities[..., 0]
    for label in range(1, probabilities.shape[-1]):
        candidate = probabilities[..., label]
        np.copyto(mask, label, where=candidate > best)
        best = np.maximum(best, candidate)
    return mask

"""Every data quirk of the real Oxford-IIIT Pet set gets a named outcome."""

import io

import numpy as np
import pytest
from PIL import Image

from mlcore.data.quality import check_sample


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


RGB = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 50, 3)).astype(np.uint8), "RGB")
TRIMAP = encode(Image.fromarray(np.full((40, 50), 2, np.uint8), "L"), "PNG")


@pytest.mark.parametrize(
    ("image_bytes", "conversions"),
    [
        (encode(RGB, "JPEG"), []),
        (encode(RGB.convert("CMYK"), "JPEG"), ["cmyk"]),
        (encode(RGB.convert("L"), "JPEG"), ["grayscale"]),
        (encode(RGB, "PNG"), ["png_data_in_jpg"]),
        (encode(RGB.convert("RGBA"), "PNG"), ["png_data_in_jpg", "rgba"]),
    ],
    ids=["ok", "cmyk", "grayscale", "png_as_jpg", "rgba"],
)
def test_convertible_images_become_rgb(image_bytes, conversions):
    checked = check_sample("x_1", image_bytes, TRIMAP)
    assert checked.rejection is None
    assert checked.conversions == conversions
    assert checked.image.mode == "RGB" and checked.image.size == (50, 40)


@pytest.mark.parametrize(
    ("image_bytes", "trimap_bytes", "reason"),
    [
        (encode(RGB, "JPEG")[:300], TRIMAP, "corrupt_image"),
        (b"not an image at all", TRIMAP, "corrupt_image"),
        (encode(RGB, "JPEG"), None, "missing_trimap"),
        (encode(RGB, "JPEG"), b"\x89PNG broken", "corrupt_trimap"),
        (encode(RGB, "JPEG"), encode(Image.new("L", (51, 40), 2), "PNG"), "trimap_size_mismatch"),
        (encode(RGB, "JPEG"), encode(Image.new("L", (50, 40), 7), "PNG"), "invalid_trimap_values"),
    ],
    ids=["truncated", "garbage", "no_trimap", "corrupt_trimap", "size_mismatch", "stray_values"],
)
def test_unusable_samples_are_quarantined_with_a_reason(image_bytes, trimap_bytes, reason):
    checked = check_sample("x_1", image_bytes, trimap_bytes)
    assert checked.rejection is not None and checked.rejection.startswith(reason)
    assert checked.image is None

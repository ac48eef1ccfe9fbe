import hashlib
from collections import Counter

import numpy as np
from PIL import Image

from mlcore.data.split import split_of
from mlcore.data.transform import resize_pair, trimap_to_classes


def test_split_is_md5_of_id_modulo_ten():
    for sample_id in ("Abyssinian_1", "pug_12", "yorkshire_terrier_190"):
        bucket = int(hashlib.md5(sample_id.encode()).hexdigest(), 16) % 10
        expected = "train" if bucket < 7 else ("validation", "test", "calibration")[bucket - 7]
        assert split_of(sample_id) == expected


def test_split_is_stable_and_proportional():
    ids = [f"breed_{i}" for i in range(20000)]
    first = [split_of(i) for i in ids]
    assert first == [split_of(i) for i in reversed(ids)][::-1]  # independent of order and of other ids
    shares = {name: count / len(ids) for name, count in Counter(first).items()}
    assert abs(shares["train"] - 0.7) < 0.02
    for name in ("validation", "test", "calibration"):
        assert abs(shares[name] - 0.1) < 0.01


def test_trimap_values_map_to_pet_background_border():
    assert trimap_to_classes(np.array([[1, 2, 3]], np.uint8)).tolist() == [[0, 1, 2]]


def test_resize_never_invents_labels():
    rng = np.random.default_rng(0)
    trimap = Image.fromarray(rng.choice([1, 3], size=(77, 53)).astype(np.uint8), "L")  # pet and border only
    image = Image.fromarray(rng.integers(0, 256, size=(77, 53, 3)).astype(np.uint8), "RGB")
    pixels, labels = resize_pair(image, trimap, 32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert labels.shape == (32, 32)
    assert set(np.unique(labels)) == {0, 2}
    # Bilinear (the seed's way) averages pet (1) and border (3) into background (2): invented labels.
    smooth = np.asarray(trimap.resize((32, 32), Image.Resampling.BILINEAR))
    assert 2 in smooth


def test_resize_of_a_two_region_trimap_keeps_the_boundary_sharp():
    trimap = np.full((64, 64), 2, np.uint8)
    trimap[:, :32] = 1
    _, labels = resize_pair(Image.new("RGB", (64, 64)), Image.fromarray(trimap, "L"), 32)
    assert (labels[:, :16] == 0).all() and (labels[:, 16:] == 1).all()

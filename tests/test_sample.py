import hashlib
import tarfile

import numpy as np
from PIL import Image

from mlcore.data.oxford import LIST_HEADER, iter_images, read_annotations
from mlcore.data.prepare import collect
from mlcore.data.sample import write_sample_archives


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_archives_are_byte_stable_for_a_seed(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_sample_archives(tmp_path / name, 30, seed, include_quirks=True)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert digests(tmp_path / "a")["images.tar.gz"] != digests(tmp_path / "c")["images.tar.gz"]


def test_archives_follow_the_oxford_layout(tmp_path):
    write_sample_archives(tmp_path, 40, 1, include_quirks=False)
    with tarfile.open(tmp_path / "annotations.tar.gz") as tar:
        names = tar.getnames()
        lines = tar.extractfile("annotations/list.txt").read().decode().splitlines()
    assert {"annotations/list.txt", "annotations/trainval.txt", "annotations/test.txt"} <= set(names)
    assert tuple(lines[:6]) == LIST_HEADER and len(lines) == 6 + 40
    annotations = read_annotations(tmp_path / "annotations.tar.gz")
    assert len(annotations.samples) == len(annotations.trimaps) == 40
    cat = annotations.samples["Abyssinian_1"]
    assert (cat.species, cat.class_id, cat.breed_id, cat.breed) == ("cat", 1, 1, "Abyssinian")
    assert annotations.samples["pug_1"].species == "dog"
    for sample_id, data in iter_images(tmp_path / "images.tar.gz"):
        image = Image.open(__import__("io").BytesIO(data))
        assert image.format == "JPEG" and image.mode == "RGB"
        trimap = np.asarray(Image.open(__import__("io").BytesIO(annotations.trimaps[sample_id])))
        assert set(np.unique(trimap)) == {1, 2, 3}  # pet, background and a border band


def test_planted_quirks_each_get_a_named_outcome(tmp_path):
    write_sample_archives(tmp_path, 60, 2, include_quirks=True)
    collected = collect(tmp_path, 32)
    summary = collected.summary()
    assert summary["images_seen"] == 60  # the .mat file and the '._' resource fork are not samples
    assert summary["quarantined"] == 3
    for reason in (
        "cmyk",
        "grayscale",
        "png_data_in_jpg",
        "rgba",
        "corrupt_image",
        "missing_trimap",
        "trimap_size_mismatch",
    ):
        assert summary["by_reason"].get(reason), reason
    usable = sum(len(samples) for samples in collected.by_split.values())
    assert usable == 57

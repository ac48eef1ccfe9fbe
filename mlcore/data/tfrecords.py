"""TFRecord shards for each split and the tf.data input pipeline that reads them.

A few shards per split rather than thousands of loose files: DVC and S3 are slow on many small
files. Records hold raw uint8 pixels and labels, so reading costs no image decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf


def shard_names(split: str, count: int) -> list[str]:
    return [f"{split}-{index:05d}-of-{count:05d}.tfrecord" for index in range(count)]


def serialize(sample_id: str, image: np.ndarray, labels: np.ndarray) -> bytes:
    height, width = labels.shape
    feature = {
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[sample_id.encode()])),
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
        "labels": tf.train.Feature(bytes_list=tf.train.BytesList(value=[labels.tobytes()])),
        "height": tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
        "width": tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)  # map fields otherwise follow hash order


def write_shards(out_dir: Path, split: str, records: Sequence[bytes], per_shard: int) -> list[str]:
    """Write records in the given order, `per_shard` to a file; returns the shard file names."""
    count = max(1, -(-len(records) // per_shard))
    names = shard_names(split, count)
    for index, name in enumerate(names):
        with tf.io.TFRecordWriter(str(out_dir / name)) as writer:
            for record in records[index * per_shard : (index + 1) * per_shard]:
                writer.write(record)
    return names


_FEATURES = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "image": tf.io.FixedLenFeature([], tf.string),
    "labels": tf.io.FixedLenFeature([], tf.string),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
}


def _parse(record: tf.Tensor) -> dict[str, tf.Tensor]:
    parsed = tf.io.parse_single_example(record, _FEATURES)
    shape = tf.stack([parsed["height"], parsed["width"]])
    image = tf.reshape(tf.io.decode_raw(parsed["image"], tf.uint8), tf.concat([shape, [3]], 0))
    labels = tf.reshape(tf.io.decode_raw(parsed["labels"], tf.uint8), shape)
    return {"id": parsed["id"], "image": tf.cast(image, tf.float32), "labels": tf.cast(labels, tf.int32)}


def read_split(prepared_dir: Path, split: str) -> tf.data.Dataset:
    """Every record of a split, in the written (sorted by id) order."""
    files = sorted(str(path) for path in Path(prepared_dir).glob(f"{split}-*.tfrecord"))
    if not files:
        raise FileNotFoundError(f"{prepared_dir}: no {split}-*.tfrecord shards; run the prepare stage")
    return tf.data.TFRecordDataset(files).map(_parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _random_flip(index: tf.Tensor, example: dict, seed: int, epoch: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Stateless: the flip of element i in epoch e depends on (seed, e, i) alone, so it survives resume."""
    draw = tf.random.stateless_uniform([], seed=tf.stack([tf.cast(seed, tf.int64), epoch * 1_000_003 + index]))
    flip = draw < 0.5
    image = tf.where(flip, tf.reverse(example["image"], axis=[1]), example["image"])
    labels = tf.where(flip, tf.reverse(example["labels"], axis=[1]), example["labels"])
    return image, labels


def training_batches(
    prepared_dir: Path, batch_size: int, seed: int, epoch: int, shuffle_buffer: int, flip: bool
) -> tf.data.Dataset:
    """One epoch of shuffled, optionally flipped batches; its order is a function of (seed, epoch)."""
    dataset = read_split(prepared_dir, "train").shuffle(
        shuffle_buffer, seed=seed * 100_003 + epoch, reshuffle_each_iteration=False
    )
    if flip:
        dataset = dataset.enumerate().map(
            lambda index, example: _random_flip(index, example, seed, epoch),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    else:
        dataset = dataset.map(lambda example: (example["image"], example["labels"]))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def evaluation_batches(prepared_dir: Path, split: str, batch_size: int) -> tf.data.Dataset:
    return (
        read_split(prepared_dir, split)
        .map(lambda example: (example["image"], example["labels"]))
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def load_split_arrays(prepared_dir: Path, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A whole split in memory: ids, float32 images [N,H,W,3] and int32 labels [N,H,W]."""
    ids, images, labels = [], [], []
    for example in read_split(prepared_dir, split).as_numpy_iterator():
        ids.append(example["id"].decode())
        images.append(example["image"])
        labels.append(example["labels"])
    return ids, np.stack(images), np.stack(labels)

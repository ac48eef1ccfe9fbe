"""Save a Keras model as a byte-stable .keras file and hash models by content.

Keras writes the save time into metadata.json and the zip entry of the weights file, and the memory
addresses of shared objects (dtype policies) into config.json, so two saves of the same weights
differ, and a model saved after loading differs from one saved after building. We rewrite the archive
with fixed entry times, no save date and no shared-object ids.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import keras

from mlcore.io import atomic_file

FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _without_shared_object_ids(config: Any) -> Any:
    """Drop Keras' object-sharing markers: they hold memory addresses, and a loaded model has none."""
    if isinstance(config, dict):
        return {k: _without_shared_object_ids(v) for k, v in config.items() if k != "shared_object_id"}
    if isinstance(config, list):
        return [_without_shared_object_ids(item) for item in config]
    return config


def _canonical_member(name: str, payload: bytes) -> bytes:
    if name == "metadata.json":
        metadata = json.loads(payload)
        metadata.pop("date_saved", None)
        return json.dumps(metadata, sort_keys=True).encode()
    if name == "config.json":
        return json.dumps(_without_shared_object_ids(json.loads(payload))).encode()
    return payload


def save_model(model: keras.Model, path: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "model.keras"
        model.save(raw)
        with (
            atomic_file(path) as staging,
            zipfile.ZipFile(raw) as source,
            zipfile.ZipFile(staging, "w", zipfile.ZIP_DEFLATED) as target,
        ):
            for name in sorted(source.namelist()):
                payload = _canonical_member(name, source.read(name))
                target.writestr(zipfile.ZipInfo(name, FIXED_ZIP_TIME), payload, zipfile.ZIP_DEFLATED)


def load_model(path: Path, compile: bool = False) -> keras.Model:
    import mlcore.model.losses
    import mlcore.model.unet  # noqa: F401

    return keras.models.load_model(path, compile=compile)


def weights_digest(model: keras.Model) -> str:
    """sha256 over every weight's name, shape, dtype and bytes: equal iff the numbers are equal."""
    digest = hashlib.sha256()
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        digest.update(f"{variable.path}:{value.shape}:{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()

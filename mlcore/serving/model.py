"""A released model as the server holds it: the SavedModel (calibration folded in), its release record and
provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def recorded_numerics(provenance_path: Path) -> dict[str, str]:
    """The oneDNN variables the model was trained and evaluated with (its provenance record), to set before
    TensorFlow loads so the server computes what the evaluate stage computed."""
    from mlcore.runtime import numerics_environment

    if not provenance_path.exists():
        return {}
    recorded = json.loads(provenance_path.read_text()).get("environment", {})
    return numerics_environment(recorded.get("onednn_opts", False), recorded.get("max_cpu_isa", "all"))


class ReleasedModel:
    def __init__(self, release_dir: Path, provenance_path: Path | None = None, version: str = "unversioned"):
        import tensorflow as tf

        self.directory = Path(release_dir)
        self.release = json.loads((self.directory / "release.json").read_text())
        provenance = Path(provenance_path) if provenance_path else None
        self.provenance = json.loads(provenance.read_text()) if provenance and provenance.exists() else None
        self.commit = (self.provenance or {}).get("source", {}).get("commit")
        self.name = self.release["model_name"]
        self.version = version
        self.image_size = int(self.release["image_size"])
        self.class_names = list(self.release["class_names"])
        self._serve = tf.saved_model.load(str(self.directory / "saved_model")).signatures["serve"]
        self.predict(np.zeros((1, self.image_size, self.image_size, 3), np.uint8))  # the first call builds kernels

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, S, S, 3] at the model's size -> calibrated probabilities float32 [N, S, S, C]."""
        return self._serve(images=images)["probabilities"].numpy()

    def metadata(self) -> dict:
        """The V2 model metadata, with the version and provenance tags the seed's deployment carried."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "tensorflow_savedmodel",
            "inputs": [
                {"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]},
                {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]},
            ],
            "outputs": [
                {"name": "mask", "datatype": "UINT8", "shape": [-1, -1, -1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, -1, -1, len(self.class_names)]},
            ],
            "parameters": {
                "version": self.version,
                "git_commit": self.commit,
                "model_sha256": self.release["model_sha256"],
                "calibrator_sha256": self.release["calibrator_sha256"],
                "calibration": self.release["calibrator"]["method"],
                "class_names": self.class_names,
                "image_size": self.image_size,
            },
        }

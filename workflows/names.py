"""Names the generated manifests, the pods' entry point (task.py) and the submitter (submit.py) agree on."""

from pathlib import Path

from mlcore.pins import DEFAULT_PINS_PATH
from mlcore.stages.paths import PROVENANCE_PATH

PIPELINE = "mlcore-pipeline"
REPRODUCE = "mlcore-reproduce"
NAMESPACE = "mlcore"
LOCK = Path("dvc.lock")
# What a tag may change on top of the commit its image was built at: the pipeline's publish task commits these
RECORD_FILES = {str(LOCK), str(PROVENANCE_PATH), str(DEFAULT_PINS_PATH)}

"""What a pipeline run commits on top of the commit of its code (`make retrain` here, the publish task on the
cluster), and so all that a model's tag may change there: the pins it took, dvc.lock and the provenance record."""

from mlcore.lockfile import LOCK_PATH
from mlcore.pins import DEFAULT_PINS_PATH
from mlcore.stages.paths import PROVENANCE_PATH

RECORD_FILES = (str(DEFAULT_PINS_PATH), str(LOCK_PATH), str(PROVENANCE_PATH))

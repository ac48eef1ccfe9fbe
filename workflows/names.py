"""Names the generated manifests, the pods' entry point (task.py) and the submitter (submit.py) agree on."""

PIPELINE = "mlcore-pipeline"
REPRODUCE = "mlcore-reproduce"
NAMESPACE = "mlcore"

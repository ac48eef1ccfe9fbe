"""The cluster half: Argo Workflows generated with Hera from dvc.yaml's stage graph."""

"""mlcore: the ML library (data, model, training, calibration, metrics) and its DVC stage entry points.

The library modules know nothing about DVC or Argo; `mlcore.stages` holds the thin entry points that
`dvc.yaml` runs.
"""

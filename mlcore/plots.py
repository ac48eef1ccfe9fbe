"""Figures as byte-stable PNGs (Agg backend, no software or date metadata)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mlcore.data.oxford import CLASS_NAMES
from mlcore.io import atomic_file

CLASS_COLOURS = np.array([[230, 120, 40], [40, 60, 120], [250, 250, 250]], np.uint8)


def _save(figure: plt.Figure, path: Path) -> None:
    with atomic_file(path) as staging:
        figure.savefig(staging, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)


def reliability_diagram(curves: dict[str, list[dict]], title: str, path: Path) -> None:
    """Accuracy against confidence per bin, one line per model, with the diagonal for reference."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for name, table in curves.items():
        rows = [r for r in table if r["count"]]
        axis.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o", label=name)
    axis.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    axis.legend(loc="upper left")
    _save(figure, path)


def prediction_grid(
    images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, confidence: np.ndarray, ids: list[str], path: Path
) -> None:
    """One row per example: image, ground truth, prediction, calibrated confidence."""
    rows = len(ids)
    figure, axes = plt.subplots(rows, 4, figsize=(10, 2.5 * rows), squeeze=False)
    for row in range(rows):
        panels = (
            (images[row].astype(np.uint8), f"{ids[row]}"),
            (CLASS_COLOURS[labels[row]], "truth"),
            (CLASS_COLOURS[predictions[row]], "prediction"),
            (confidence[row], "calibrated confidence"),
        )
        for column, (picture, title) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(picture, vmin=0, vmax=1, cmap="viridis" if picture.ndim == 2 else None)
            axis.set_title(title, fontsize=8)
            axis.axis("off")
    legend = ", ".join(
        f"{n}: {'orange' if k == 0 else 'navy' if k == 1 else 'white'}" for k, n in enumerate(CLASS_NAMES)
    )
    figure.suptitle(legend, fontsize=8)
    figure.tight_layout()
    _save(figure, path)

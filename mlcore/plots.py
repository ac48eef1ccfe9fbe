"""Figures as byte-stable PNGs (Agg backend, no software or date metadata)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mlcore.data.oxford import CLASS_NAMES
from mlcore.io import atomic_file

RAW_STYLE = {"marker": "x", "linestyle": "--", "zorder": 3}
CALIBRATED_STYLE = {"marker": "o", "linestyle": "-", "zorder": 2}
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


def _class_legend() -> str:
    return ", ".join(f"{n}: {'orange' if k == 0 else 'navy' if k == 1 else 'white'}" for k, n in enumerate(CLASS_NAMES))


def _panel_grid(rows: list[list[tuple[np.ndarray, str]]], title: str, path: Path) -> None:
    """A grid of pictures, one list of (picture, caption) per row; 2-D pictures in [0, 1] use a colour map."""
    columns = len(rows[0])
    figure, axes = plt.subplots(len(rows), columns, figsize=(2.5 * columns, 2.5 * len(rows)), squeeze=False)
    for row, panels in enumerate(rows):
        for column, (picture, caption) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(picture, vmin=0, vmax=1, cmap="viridis" if picture.ndim == 2 else None)
            axis.set_title(caption, fontsize=8)
            axis.axis("off")
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def prediction_grid(
    images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, confidence: np.ndarray, ids: list[str], path: Path
) -> None:
    """One row per example: image, ground truth, prediction, calibrated confidence."""
    rows = [
        [
            (images[row].astype(np.uint8), f"{ids[row]}"),
            (CLASS_COLOURS[labels[row]], "truth"),
            (CLASS_COLOURS[predictions[row]], "prediction"),
            (confidence[row], "calibrated confidence"),
        ]
        for row in range(len(ids))
    ]
    _panel_grid(rows, _class_legend(), path)


def attack_grid(
    clean: np.ndarray,
    perturbed: np.ndarray,
    labels: np.ndarray,
    clean_predictions: np.ndarray,
    perturbed_predictions: np.ndarray,
    ids: list[str],
    caption: str,
    path: Path,
) -> None:
    """One row per example: clean image and prediction, perturbed image and prediction, the perturbation
    stretched to the full grey range, ground truth."""
    budget = np.abs(perturbed - clean).max() or 1.0
    rows = [
        [
            (clean[row].astype(np.uint8), f"{ids[row]}"),
            (CLASS_COLOURS[clean_predictions[row]], "clean prediction"),
            (np.clip(np.round(perturbed[row]), 0, 255).astype(np.uint8), f"{caption} image"),
            (CLASS_COLOURS[perturbed_predictions[row]], f"{caption} prediction"),
            (((perturbed[row] - clean[row]) / (2 * budget) + 0.5).clip(0, 1), "perturbation (stretched)"),
            (CLASS_COLOURS[labels[row]], "truth"),
        ]
        for row in range(len(ids))
    ]
    _panel_grid(rows, _class_legend(), path)


def robustness_curve(rows: list[dict], series: list[str], unit: str, path: Path) -> None:
    """Mean IoU against the attack budget, one line per attack and model (raw: dashed)."""
    figure, axis = plt.subplots(figsize=(6, 4))
    epsilons = [row["epsilon"] for row in rows]
    for name in series:
        # raw over calibrated: a temperature keeps every argmax, so their lines coincide
        style = RAW_STYLE if name.endswith("raw") else CALIBRATED_STYLE
        axis.plot(epsilons, [row[name] for row in rows], label=name.replace("_", " "), **style)
    axis.set(xlabel=f"epsilon ({unit})", ylabel="test mean IoU", ylim=(0, 1), title="Mean IoU under attack")
    axis.legend(loc="lower left")
    axis.grid(alpha=0.3)
    _save(figure, path)

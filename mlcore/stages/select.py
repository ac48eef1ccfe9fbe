"""select: the best configuration of the last rung into tuning/best.json (ties: lowest trial id),
a summary in metrics/tune.json and every score in plots/tune/scores.csv."""

from __future__ import annotations

import csv
import io

from mlcore.io import atomic_file, write_json
from mlcore.params import Params
from mlcore.stages._common import read_rung
from mlcore.stages.paths import BEST_PATH, METRICS_DIR, PLOTS_DIR
from mlcore.tuning import select

SCORES_PATH = PLOTS_DIR / "tune" / "scores.csv"


def scores_csv(rungs: list[list[dict]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "rung", "epochs", "val_mean_iou"])
    for results in rungs:
        for result in sorted(results, key=lambda r: r["trial"]):
            writer.writerow([result["trial"], result["rung"], result["epochs"], result["val_mean_iou"]])
    return buffer.getvalue()


def run(params: Params) -> None:
    rungs = [read_rung(r) for r in range(len(params.tune.rungs))]
    best = select(rungs)
    write_json(BEST_PATH, {key: best[key] for key in ("trial", "rung", "epochs", "config", "val_mean_iou")})
    baseline = [r for r in rungs[0] if r["trial"] == 0] if params.tune.include_defaults else []
    write_json(
        METRICS_DIR / "tune.json",
        {
            "best_trial": best["trial"],
            "best_val_mean_iou": best["val_mean_iou"],
            "defaults_rung0_val_mean_iou": baseline[0]["val_mean_iou"] if baseline else None,
            "best_rung0_val_mean_iou": next(r["val_mean_iou"] for r in rungs[0] if r["trial"] == best["trial"]),
            "trials_per_rung": [len(results) for results in rungs],
        },
    )
    with atomic_file(SCORES_PATH) as temporary:
        temporary.write_text(scores_csv(rungs))
    print(f"{BEST_PATH}: trial {best['trial']} (validation mean IoU {best['val_mean_iou']:.4f}) {best['config']}")

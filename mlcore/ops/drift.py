"""`python -m mlcore.ops.drift --metrics URL_OR_FILE`: has the served traffic moved away from the training data?

The inference server counts each served image's signals (mlcore.drift) into Prometheus histograms; prepare
counts the training split's into the same buckets (data/prepared/manifest.json). This compares the two with
the population stability index, signal by signal, and prints one table. The report informs: it exits 0
whatever the shift. Only a report that cannot be made (metrics or manifest unreadable, buckets that differ
from mlcore.drift.SIGNALS) is an error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from mlcore.drift import METRIC_NAMES, SIGNALS, population_stability_index
from mlcore.stages.paths import PREPARED_DIR

MANIFEST = PREPARED_DIR / "manifest.json"
MODERATE_SHIFT, LARGE_SHIFT = 0.1, 0.25  # PSI thresholds, as usually read
MIN_SERVED = 30  # served images below which a PSI says more about chance than about the traffic


class DriftError(ValueError):
    """The histograms cannot be compared: one is missing, or its buckets are not mlcore.drift.SIGNALS'."""


@dataclass(frozen=True)
class DriftRow:
    signal: str
    training_count: int
    served_count: int
    psi: float
    verdict: str


def served_histograms(metrics_text: str) -> dict[str, list[int]]:
    """Each signal's per-bucket counts, in SIGNALS order, from a server's Prometheus text (whose buckets are
    cumulative), summed over label sets: several replicas' series count as one server."""
    names = {f"{name}_bucket": name for name in METRIC_NAMES.values()}
    cumulative: dict[str, dict[float, float]] = {name: {} for name in METRIC_NAMES.values()}
    try:
        for family in text_string_to_metric_families(metrics_text):
            for sample in family.samples:
                if (name := names.get(sample.name)) is not None:
                    le = float(sample.labels["le"])
                    cumulative[name][le] = cumulative[name].get(le, 0.0) + sample.value
    except (ValueError, KeyError) as exc:
        raise DriftError(f"not Prometheus text exposition ({exc})") from None
    return {
        signal: _per_bucket(METRIC_NAMES[signal], cumulative[METRIC_NAMES[signal]], SIGNALS[signal])
        for signal in SIGNALS
    }


def _per_bucket(name: str, cumulative: dict[float, float], edges: tuple[float, ...]) -> list[int]:
    if not cumulative:
        raise DriftError(
            f"the metrics have no {name} histogram: not the inference server's, or a version that "
            "does not count drift signals"
        )
    bounds = [*map(float, edges), math.inf]
    if sorted(cumulative) != bounds:
        raise DriftError(
            f"{name}'s buckets (le {sorted(cumulative)}) are not mlcore.drift.SIGNALS' {list(edges)} "
            "and +Inf: the server counts with another version of the signals"
        )
    totals = [round(cumulative[bound]) for bound in bounds]
    return [total - below for total, below in zip(totals, [0, *totals[:-1]], strict=True)]


def training_histograms(manifest: dict, source: Path = MANIFEST) -> dict[str, list[int]]:
    """Each signal's per-bucket counts over the training split, as prepare recorded them in its manifest
    (`source` names it in errors), checked to be in the buckets the server counts in."""
    histograms = {}
    for signal, edges in SIGNALS.items():
        try:
            recorded = manifest["splits"]["train"]["statistics"][signal]
            recorded_edges, counts = [float(edge) for edge in recorded["edges"]], recorded["counts"]
        except (KeyError, TypeError, ValueError):
            raise DriftError(f"{source} has no training statistics of {signal}: re-run prepare") from None
        if recorded_edges != [float(edge) for edge in edges] or len(counts) != len(edges) + 1:
            raise DriftError(
                f"{source}: the training statistics of {signal} have edges {recorded_edges} and "
                f"{len(counts)} counts, not mlcore.drift.SIGNALS' {list(edges)} and "
                f"{len(edges) + 1}: re-run prepare"
            )
        histograms[signal] = [int(count) for count in counts]
    return histograms


def compare(
    training: dict[str, list[int]], served: dict[str, list[int]], min_served: int = MIN_SERVED
) -> list[DriftRow]:
    """One row per signal, in SIGNALS order."""
    rows = []
    for signal in SIGNALS:
        psi = population_stability_index(training[signal], served[signal])
        served_count = sum(served[signal])
        rows.append(DriftRow(signal, sum(training[signal]), served_count, psi, verdict(psi, served_count, min_served)))
    return rows


def verdict(psi: float, served_count: int, min_served: int = MIN_SERVED) -> str:
    if served_count < min_served:
        return "too few requests"
    if psi < MODERATE_SHIFT:
        return "no shift"
    return "moderate shift" if psi < LARGE_SHIFT else "large shift"


def format_report(rows: list[DriftRow], min_served: int = MIN_SERVED) -> str:
    header = (
        f"population stability index (served vs training): under {MODERATE_SHIFT} no shift, under "
        f"{LARGE_SHIFT} moderate, else large; under {min_served} served images: too few requests"
    )
    lines = [header, f"{'signal':<14}{'training':>10}{'served':>10}{'PSI':>9}  verdict"]
    lines += [
        f"{row.signal:<14}{row.training_count:>10}{row.served_count:>10}{row.psi:>9.4f}  {row.verdict}" for row in rows
    ]
    return "\n".join(lines)


def read_metrics(source: str) -> str:
    """The Prometheus text of an http(s) URL (a server's /metrics) or of a file."""
    if source.startswith(("http://", "https://")):
        response = requests.get(source, timeout=10)
        response.raise_for_status()
        return response.text
    return Path(source).read_text()


def report(metrics_source: str, manifest: Path = MANIFEST, min_served: int = MIN_SERVED) -> str:
    """The drift table of a server's /metrics (URL or file) against prepare's manifest; DriftError or OSError
    (requests' errors are OSErrors) when either cannot be read."""
    served = served_histograms(read_metrics(metrics_source))
    try:
        training = training_histograms(json.loads(manifest.read_text()), manifest)
    except json.JSONDecodeError as exc:
        raise DriftError(f"{manifest}: not JSON ({exc}); re-run prepare") from exc
    return format_report(compare(training, served, min_served), min_served)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", required=True, help="the server's /metrics URL, or a file holding its text")
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="prepare's manifest (training statistics)")
    parser.add_argument("--min-served", type=int, default=MIN_SERVED, help="served images a verdict needs")
    arguments = parser.parse_args()
    try:
        print(report(arguments.metrics, arguments.manifest, arguments.min_served))
    except (DriftError, OSError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()

"""Champion and challenger: does a candidate replace the model in prod? Both are scored on the same test split;
the candidate may not be worse on the chosen metric by more than the tolerance."""

from __future__ import annotations

from dataclasses import dataclass

from mlcore.metrics import lookup

LOWER_IS_BETTER = {"ece"}  # last part of a metric key


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(metric: str, tolerance: float, challenger: dict, champion: dict | None, champion_version: str) -> Decision:
    """`challenger` and `champion` are metrics documents ({"calibrated": {...}, ...}); None: no model in prod."""
    if champion is None:
        return Decision(True, "no model in prod yet: the release gate alone decides")
    new, old = float(lookup(challenger, metric)), float(lookup(champion, metric))
    worse_by = new - old if metric.rsplit(".", 1)[-1] in LOWER_IS_BETTER else old - new
    comparison = f"{metric} {new:.4f} against {old:.4f} for {champion_version} in prod"
    if worse_by > tolerance:
        return Decision(False, f"{comparison}: worse by {worse_by:.4f}, more than the tolerance {tolerance}")
    return Decision(True, f"{comparison}: not worse by more than the tolerance {tolerance}")

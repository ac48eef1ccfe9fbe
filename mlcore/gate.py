"""The release gate: every bound in params.yaml release.gate must hold for the calibrated model on the
test split (clean, and under attack when a robust bound is set), or nothing is exported."""

from __future__ import annotations

from dataclasses import dataclass

from mlcore.params import GateParams
from mlcore.robustness_scores import epsilon_key


@dataclass(frozen=True)
class Check:
    metric: str
    bound: str  # ">=" or "<="
    threshold: float
    value: float | None

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        return self.value >= self.threshold if self.bound == ">=" else self.value <= self.threshold


def check_gate(evaluation: dict, robustness: dict, gate: GateParams) -> list[Check]:
    """Every bound against metrics/evaluate.json, and the optional one under attack against metrics/robustness.json."""
    calibrated = evaluation["calibrated"]
    checks = [
        Check("calibrated mean IoU", ">=", gate.min_mean_iou, calibrated["mean_iou"]),
        Check("calibrated pet IoU", ">=", gate.min_pet_iou, calibrated["per_class"]["pet"]["iou"]),
        Check("calibrated pixel accuracy", ">=", gate.min_pixel_accuracy, calibrated["pixel_accuracy"]),
        Check("calibrated ECE", "<=", gate.max_ece, calibrated["ece"]),
    ]
    if bound := gate.min_robust_mean_iou:
        # not measured (a metrics file of other settings): no value, so the check fails
        attacked = robustness["attacks"].get(bound.attack, {}).get(epsilon_key(bound.epsilon))
        value = attacked["calibrated"]["mean_iou"] if attacked else None
        checks.append(
            Check(f"calibrated mean IoU, {bound.attack.upper()} eps {bound.epsilon}/255", ">=", bound.value, value)
        )
    return checks


def format_table(checks: list[Check]) -> str:
    width = max(len(check.metric) for check in checks)
    lines = [f"{'metric':<{width}} {'bound':<12} {'value':>8}  verdict"]
    for check in checks:
        value = "-" if check.value is None else f"{check.value:.4f}"
        verdict = "pass" if check.passed else "FAIL"
        lines.append(f"{check.metric:<{width}} {check.bound} {check.threshold:<9} {value:>8}  {verdict}")
    return "\n".join(lines)

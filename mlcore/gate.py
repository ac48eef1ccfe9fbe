"""The release gate: every bound in params.yaml release.gate must hold for the calibrated model on the
test split, or nothing is exported."""

from __future__ import annotations

from dataclasses import dataclass

from mlcore.params import GateParams


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


def check_gate(evaluation: dict, gate: GateParams) -> list[Check]:
    calibrated = evaluation["calibrated"]
    return [
        Check("calibrated mean IoU", ">=", gate.min_mean_iou, calibrated["mean_iou"]),
        Check("calibrated pet IoU", ">=", gate.min_pet_iou, calibrated["per_class"]["pet"]["iou"]),
        Check("calibrated pixel accuracy", ">=", gate.min_pixel_accuracy, calibrated["pixel_accuracy"]),
        Check("calibrated ECE", "<=", gate.max_ece, calibrated["ece"]),
    ]


def format_table(checks: list[Check]) -> str:
    lines = [f"{'metric':<28} {'bound':<12} {'value':>8}  verdict"]
    for check in checks:
        value = "-" if check.value is None else f"{check.value:.4f}"
        lines.append(
            f"{check.metric:<28} {check.bound} {check.threshold:<9} {value:>8}  {'pass' if check.passed else 'FAIL'}"
        )
    return "\n".join(lines)

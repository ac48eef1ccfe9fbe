"""The model card shipped with a release: what the model is for, how well it does, where it falls short,
and the hashes that tie it to its data and code."""

from __future__ import annotations

from mlcore.data.oxford import CLASS_NAMES
from mlcore.robustness_scores import key_epsilon


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _comparison(release: dict) -> str:
    """This model against the one in prod when it was trained, both scored on this test split."""
    decision = f"Decision: **{'promote' if release['promote'] else 'keep the champion'}**: {release['decision']}."
    champion = release["champion"]
    if champion is None:
        return decision
    rows = "\n".join(
        f"| {label} | `{model['model_sha256'][:12]}` | {_number(model['metrics']['calibrated']['mean_iou'])} "
        f"| {_number(model['metrics']['calibrated']['per_class']['pet']['iou'])} "
        f"| {_number(model['metrics']['calibrated']['ece'])} |"
        for label, model in (
            ("this model", {**release, "metrics": {"calibrated": release["metrics"]}}),
            (f"champion {champion['version']}", champion),
        )
    )
    return f"""| model | model.keras sha256 | mean IoU | pet IoU | ECE |
|---|---|---|---|---|
{rows}

{decision}"""


def _robustness(robustness: dict) -> str:
    """Calibrated mean IoU per attack (rows) and budget (columns), from metrics/robustness.json."""
    attacks = robustness["attacks"]
    budgets = sorted(next(iter(attacks.values())), key=key_epsilon)
    header = " | ".join(f"eps {key_epsilon(key)}/255" for key in budgets)
    rows = "\n".join(
        f"| {attack.upper()} | "
        + " | ".join(_number(attacks[attack][key]["calibrated"]["mean_iou"]) for key in budgets)
        + " |"
        for attack in attacks
    )
    worst = robustness["strongest"]
    target = robustness["attack_target"]
    return f"""Calibrated mean IoU on the test split under L-infinity attacks on the {target} model, by budget in
grey levels:

| attack | {header} |
|---|{"---|" * len(budgets)}
{rows}

At the largest budget ({worst["epsilon"]}/255) {worst["attack"].upper()} changes the class of
{worst["calibrated"]["label_flip_fraction"]:.1%} of the pixels. Changes too small to see can change the mask: do
not rely on it where someone may craft the input."""


def render(release: dict, evaluation: dict, robustness: dict, data_manifest: dict) -> str:
    splits = data_manifest["splits"]
    rows = "\n".join(
        f"| {label} | {_number(evaluation[key]['mean_iou'])} | {_number(evaluation[key]['per_class']['pet']['iou'])} "
        f"| {_number(evaluation[key]['pixel_accuracy'])} | {_number(evaluation[key]['ece'])} |"
        for label, key in (
            ("calibrated", "calibrated"),
            ("raw", "raw"),
            ("majority-class baseline", "baseline_majority_class"),
        )
    )
    gate = "\n".join(
        f"| {c['metric']} | {c['bound']} {c['threshold']} | {_number(c['value'])} | pass |" for c in release["gate"]
    )
    tuning = release["tuning"]
    return f"""# Model card: {release["model_name"]}

## Model
U-Net semantic segmenter with a `{tuning["config"]["encoder"]}` encoder. Input: an RGB image, resized to
{release["image_size"]}x{release["image_size"]} (bilinear) by the server. Output: per-pixel probabilities of
{", ".join(CLASS_NAMES)} (calibrated: {release["calibrator"]["method"]}) and the class mask, at the input's size.
Formats: TensorFlow SavedModel `saved_model/` (signature `serve`, calibration folded in) and Keras `model.keras`
plus `calibrator.json`.

## Intended use
Separating a pet from the background in photos of a single cat or dog, e.g. for cropping or
background removal, with a confidence per pixel. Not for other animals, people, or any decision about an
animal's health or identity.

## Data
Oxford-IIIT Pet trimaps (or the project's generated sample in the same format), split by md5 of the sample
id: {splits["train"]["count"]} train, {splits["validation"]["count"]} validation, {splits["test"]["count"]} test,
{splits["calibration"]["count"]} calibration images.

## Metrics (test split)
| model | mean IoU | pet IoU | pixel accuracy | ECE |
|---|---|---|---|---|
{rows}

## Robustness
{_robustness(robustness)}

## Release gate
| metric | bound | value | verdict |
|---|---|---|---|
{gate}

## Champion and challenger
{_comparison(release)}

## Training configuration
Selected by the hyperparameter search: trial {tuning["trial"]} (validation mean IoU {_number(tuning["val_mean_iou"])}
after {tuning["epochs"]} epoch(s)): `{tuning["config"]}`.

## Limits
- The border class (a thin band around the pet) is the hardest: see its IoU in `metrics/evaluate.json`.
- Trained at {release["image_size"]} px: fine detail (fur, whiskers) is lost; large inputs are downsampled.
- Photos unlike the training distribution (several animals, drawings, extreme lighting) are not evaluated.
- Calibration was fitted on {splits["calibration"]["count"]} images; confidences outside that distribution may be off.

## Provenance
- model.keras sha256 `{release["model_sha256"]}`
- calibrator.json sha256 `{release["calibrator_sha256"]}`
- The git commit, every stage's input and output hash, the environment and the image are in
  `models/provenance.json` of the release tag; `make reproduce REF=<tag>` replays it hash for hash.
"""

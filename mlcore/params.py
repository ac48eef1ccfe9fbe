"""The schema of params.yaml: every knob of the pipeline, validated before any stage does work.

Unknown keys are errors (a typo must never silently fall back to a default), and a failed validation
lists every problem with its field path, the offending value and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Annotated, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PARAMS_PATH = Path("params.yaml")

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def revised(self, **changes: object) -> Self:
        """A copy with some fields changed, validated like params.yaml itself (pydantic's
        `model_copy(update=...)` does not validate, so a value the schema refuses would slip through)."""
        return self.model_validate(self.model_dump() | changes)


class RuntimeParams(Strict):
    """Settings that change the trained weights' bytes, so they are pinned like any other knob."""

    intra_op_threads: PositiveInt
    inter_op_threads: PositiveInt
    onednn_opts: bool
    # The widest instruction set oneDNN's kernels may use (ONEDNN_MAX_CPU_ISA). TensorFlow calls them for
    # matrix products and convolutions even with onednn_opts off, and they pick AVX-512 or AVX2 code by CPU:
    # a cap makes CPUs with more than the cap compute the same bits. "all" lifts it.
    max_cpu_isa: Literal["all", "avx512_core", "avx2", "avx", "sse41"]


class ArchiveSpec(Strict):
    url: str = Field(pattern=r"^https?://")
    sha256: Sha256


class Archives(Strict):
    images: ArchiveSpec
    annotations: ArchiveSpec


class SampleSourceParams(Strict):
    """The built-in synthetic data set, generated in the exact Oxford-IIIT Pet archive layout."""

    num_images: Annotated[int, Field(ge=20, le=20000)]
    seed: int
    min_side: Annotated[int, Field(ge=32)]
    max_side: Annotated[int, Field(ge=32)]
    include_quirks: bool

    @model_validator(mode="after")
    def _sides_ordered(self) -> SampleSourceParams:
        if self.min_side > self.max_side:
            raise ValueError(f"min_side {self.min_side} must not exceed max_side {self.max_side}")
        return self


class DownloadParams(Strict):
    retries: Annotated[int, Field(ge=0, le=20)]
    timeout_s: Annotated[float, Field(gt=0)]
    backoff_s: Annotated[float, Field(ge=0)]


class DataParams(Strict):
    source: Literal["sample", "oxford-iiit-pet"]
    sample: SampleSourceParams
    archives: Archives
    download: DownloadParams


class PrepareParams(Strict):
    image_size: Annotated[int, Field(ge=32, le=1024, multiple_of=32)]
    max_bad_fraction: Fraction
    samples_per_shard: Annotated[int, Field(ge=8)]


class ModelParams(Strict):
    encoder: Literal["mobilenet_v2", "vgg19"]
    encoder_weights: str = Field(
        description="'none', 'imagenet', or a path to a .weights.h5 file for the encoder",
    )
    encoder_trainable: bool
    mobilenet_alpha: Literal[0.35, 0.5, 0.75, 1.0, 1.3, 1.4]
    decoder_filters: Annotated[list[PositiveInt], Field(min_length=4, max_length=4)]
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)]
    batchnorm_momentum: Annotated[float, Field(gt=0.0, lt=1.0)]


Epsilon = Annotated[int, Field(ge=0, le=255)]  # an L-infinity budget in grey levels: 1/255 of the pixel range


class AdversarialTrainingParams(Strict):
    """FGSM examples in place of the first `fraction` of every training batch (0: plain training)."""

    fraction: Fraction
    epsilon: Annotated[int, Field(ge=1, le=255)]  # grey levels


class TrainParams(Strict):
    epochs: Annotated[int, Field(ge=1, le=1000)]
    batch_size: Annotated[int, Field(ge=1, le=1024)]
    learning_rate: Annotated[float, Field(gt=0, le=1)]
    loss: Literal["cross_entropy", "cross_entropy+dice"]
    horizontal_flip: bool
    shuffle_buffer: Annotated[int, Field(ge=1)]
    adversarial: AdversarialTrainingParams


class CalibrateParams(Strict):
    method: Literal["temperature", "isotonic"]
    ece_bins: Annotated[int, Field(ge=2, le=100)]


class EvaluateParams(Strict):
    grid_examples: Annotated[int, Field(ge=1, le=32)]
    confusion_plot_pixels: Annotated[int, Field(ge=100)]


class PgdParams(Strict):
    steps: Annotated[int, Field(ge=1, le=1000)]
    step_size: Annotated[float, Field(gt=0, le=1)]  # each step moves at most this fraction of epsilon
    random_start: bool  # uniform in the epsilon-ball, from a stateless RNG seeded by robustness.seed


class RobustnessParams(Strict):
    """L-infinity attacks on the test split: the model's metrics at each budget (grey levels, 1/255 of the range)."""

    epsilons: Annotated[list[Epsilon], Field(min_length=2)]
    attacks: Annotated[list[Literal["fgsm", "pgd"]], Field(min_length=1)]
    pgd: PgdParams
    seed: Annotated[int, Field(ge=0, lt=2**63)]
    grid_examples: Annotated[int, Field(ge=1, le=32)]

    @model_validator(mode="after")
    def _ordered(self) -> RobustnessParams:
        if self.epsilons != sorted(set(self.epsilons)):
            raise ValueError(f"epsilons must be increasing without repeats, got {self.epsilons}")
        if self.epsilons[0] != 0 or len(self.epsilons) < 2:
            raise ValueError(
                f"epsilons must start at 0 (the clean metrics, checked against evaluate's) and have a larger "
                f"budget to attack with, got {self.epsilons}"
            )
        if len(set(self.attacks)) != len(self.attacks):
            raise ValueError(f"attacks must not repeat, got {self.attacks}")
        return self


class LogUniform(Strict):
    low: Annotated[float, Field(gt=0, le=1)]
    high: Annotated[float, Field(gt=0, le=1)]

    @model_validator(mode="after")
    def _ordered(self) -> LogUniform:
        if self.low >= self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        return self


class SearchSpace(Strict):
    """Choices per knob (learning rate: a log-uniform range); one-element lists fix a knob."""

    encoder: Annotated[list[Literal["mobilenet_v2", "vgg19"]], Field(min_length=1)]
    learning_rate: LogUniform
    batch_size: Annotated[list[Annotated[int, Field(ge=1, le=1024)]], Field(min_length=1)]
    encoder_trainable: Annotated[list[bool], Field(min_length=1)]
    loss: Annotated[list[Literal["cross_entropy", "cross_entropy+dice"]], Field(min_length=1)]


class Rung(Strict):
    epochs: Annotated[int, Field(ge=1, le=1000)]
    slots: Annotated[list[int], Field(min_length=1)]


class TuneParams(Strict):
    """Successive halving over a seeded random plan: rung 0 trains every trial, each later rung the best of the
    rung before with a larger budget (epochs). dvc.yaml has one matrix stage per rung (rung0, rung1, ...)."""

    seed: int
    include_defaults: bool  # trial 0 is params.yaml's own model/train settings: the baseline to beat
    space: SearchSpace
    rungs: Annotated[list[Rung], Field(min_length=1, max_length=8)]

    @property
    def trials(self) -> int:
        return len(self.rungs[0].slots)

    @model_validator(mode="after")
    def _halving(self) -> TuneParams:
        for index, rung in enumerate(self.rungs):
            if rung.slots != list(range(len(rung.slots))):
                raise ValueError(f"rungs.{index}.slots must be 0..{len(rung.slots) - 1} in order, got {rung.slots}")
            if index and len(rung.slots) >= len(self.rungs[index - 1].slots):
                raise ValueError(f"rungs.{index} must keep fewer trials than rung {index - 1}")
            if index and rung.epochs <= self.rungs[index - 1].epochs:
                raise ValueError(f"rungs.{index}.epochs must exceed rung {index - 1}'s (a larger budget)")
        return self


class RobustBound(Strict):
    """The calibrated mean IoU under `attack` at budget `epsilon` (one of robustness.epsilons) must reach `value`."""

    attack: Literal["fgsm", "pgd"]
    epsilon: Epsilon
    value: Fraction


class GateParams(Strict):
    """Bounds on the calibrated model's test metrics; all must hold for a release."""

    min_mean_iou: Fraction
    min_pet_iou: Fraction
    min_pixel_accuracy: Fraction
    max_ece: Fraction
    min_robust_mean_iou: RobustBound | None  # optional: a bound under attack (metrics/robustness.json)


MetricKey = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]


class ChampionParams(Strict):
    """A candidate replaces the model assigned prod only if it is not worse on `metric` (both scored on the same
    test split) by more than `tolerance`; a metric whose last part is `ece` counts lower as better."""

    metric: MetricKey
    tolerance: Annotated[float, Field(ge=0, le=1)]


class ReleaseParams(Strict):
    gate: GateParams
    champion: ChampionParams
    model_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


InflowPrefix = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")]


class InflowParams(Strict):
    """New samples for continuous training, in the DVC remote's bucket under each prefix, in the Oxford-IIIT Pet
    layout (images/<id>.jpg, annotations/trimaps/<id>.png): served feedback and drops of files."""

    prefixes: Annotated[list[InflowPrefix], Field(min_length=1)]
    min_new_samples: Annotated[int, Field(ge=1)]  # a retrain with fewer new images does nothing
    settle_s: Annotated[float, Field(ge=0, le=86400)]  # younger objects wait for the next snapshot


Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|Ki|Mi|Gi|Ti)?$")]


class Resources(Strict):
    """A pod's requests, equal to its limits (Guaranteed QoS: the CPU a stage sees is the CPU it asked for)."""

    cpu: Quantity
    memory: Quantity
    ephemeral_storage: Quantity  # the pod's workspace emptyDir: data, DVC cache, checkpoints
    gpu: Annotated[int, Field(ge=0, le=16)]


class ReplayParams(Strict):
    """When a retrained tag counts as reproduced on a machine of another hardware class (mlcore/hardware.py):
    bit-identity is expected only within one class, so there its metrics must stay within these bounds."""

    tolerance: dict[MetricKey, Annotated[float, Field(ge=0)]]


class ClusterS3(Strict):
    """The S3 the workflows use by default (cluster-conf/base/artifact-repository.yaml must name the same)."""

    endpoint: str
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    prefix: str


class ClusterParams(Strict):
    """How the Argo workflow runs the stages. No stage reads this section, so it never changes an output."""

    parallelism: Annotated[int, Field(ge=1, le=256)]
    retries: Annotated[int, Field(ge=0, le=10)]
    deadline_hours: Annotated[float, Field(gt=0, le=168)]
    # Fixed in the templates, not parameters: whoever submits a Workflow chooses only the image's digest
    # (never another image that would get the S3 and git Secrets) and cannot send the git token elsewhere.
    image_repository: Annotated[str, Field(pattern=r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$")]
    git_remote: Annotated[str, Field(pattern=r"^(https|git|file)://")]
    s3: ClusterS3
    resources: dict[str, Resources]
    published_metrics: dict[str, list[MetricKey]]
    retrain_schedule: Annotated[str, Field(pattern=r"^\S+( \S+){4}$")]  # cron, UTC

    @model_validator(mode="after")
    def _has_default(self) -> ClusterParams:
        if "default" not in self.resources:
            raise ValueError("resources needs a 'default' entry for stages not listed by name")
        return self


class Params(Strict):
    seed: int
    runtime: RuntimeParams
    data: DataParams
    prepare: PrepareParams
    model: ModelParams
    train: TrainParams
    calibrate: CalibrateParams
    evaluate: EvaluateParams
    robustness: RobustnessParams
    tune: TuneParams
    inflow: InflowParams
    release: ReleaseParams
    replay: ReplayParams
    cluster: ClusterParams

    @model_validator(mode="after")
    def _robust_bound_is_measured(self) -> Params:
        bound = self.release.gate.min_robust_mean_iou
        if bound and (bound.attack not in self.robustness.attacks or bound.epsilon not in self.robustness.epsilons):
            raise ValueError(
                f"release.gate.min_robust_mean_iou bounds {bound.attack} at epsilon {bound.epsilon}, which the "
                f"robustness stage does not measure (robustness.attacks {self.robustness.attacks}, "
                f"epsilons {self.robustness.epsilons}): add them there or change the bound"
            )
        return self

    def digest(self) -> str:
        """sha256 of the canonical JSON form: the same settings give the same digest, whatever the YAML."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message lists every problem."""


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: {error.error_count()} invalid setting(s); fix them and re-run:"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "missing":
            lines.append(f"  - {field}: missing; add it (params.yaml holds every setting: the schema has no defaults)")
        elif item["type"] == "extra_forbidden":
            lines.append(f"  - {field}: unknown key (value {item['input']!r}); remove it or fix its spelling")
        elif item["type"] == "value_error":  # a rule across fields: its message quotes the values concerned
            where = f"{field}: " if item["loc"] else ""  # no location: a rule across sections, named in the message
            lines.append(f"  - {where}{item['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  - {field}: got {item['input']!r}; {item['msg']}")
    return "\n".join(lines)


def load_params(path: Path | str = DEFAULT_PARAMS_PATH) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ParamsError(f"{path}: not found; run from the repository root") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_format_errors(path, exc)) from None


def main() -> None:
    """`python -m mlcore.params [FILE]`: validate a params file, exit non-zero with every problem."""
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PARAMS_PATH
    try:
        params = load_params(path)
    except ParamsError as exc:
        sys.exit(str(exc))
    print(f"{path}: valid (digest {params.digest()[:12]})")


if __name__ == "__main__":
    main()

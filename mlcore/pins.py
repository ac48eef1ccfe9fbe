"""pins.yaml: what the pipeline takes from outside git, pinned so that a replay takes exactly the same.

Two stages read from systems that change under them: `inflow` lists a bucket where samples keep arriving, and
`champion` asks the model registry which model is in prod. `make retrain` (and the cluster's snapshot task)
decides both once and writes them here; the stages take only what is pinned, and a replay of a tag restores
their outputs instead of asking again. DVC tracks the file as a params file of those two stages.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PINS_PATH = Path("pins.yaml")
HEADER = """\
# Written by `make retrain` (mlcore/ops/retrain.py) or the cluster's snapshot task; do not edit by hand.
# The inflow and champion stages take exactly what is pinned here (mlcore/pins.py), so replays take the same.
"""
Md5 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Commit = Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]


class Pinned(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InflowPin(Pinned):
    """The snapshot: every image and trimap under params.yaml inflow.prefixes last modified before `cutoff`."""

    cutoff: datetime.datetime | None = None  # UTC; none: the inflow is empty
    objects: Annotated[int, Field(ge=0)] = 0  # how many objects that listing held
    listing_sha256: Sha256 | None = None  # of the listing (key, size, ETag): checked before anything is taken

    @model_validator(mode="after")
    def _complete(self) -> InflowPin:
        if (self.cutoff is None) != (self.listing_sha256 is None):
            raise ValueError("cutoff and listing_sha256 are set together (or neither)")
        if self.cutoff is not None and self.cutoff.utcoffset() != datetime.timedelta(0):
            raise ValueError(f"cutoff {self.cutoff.isoformat()} must be in UTC")
        return self


class ChampionPin(Pinned):
    """The model assigned prod in the GTO registry when the run started, by its outputs' md5 in dvc.lock."""

    version: Annotated[str, Field(pattern=r"^v[0-9]+\.[0-9]+\.[0-9]+$")] | None = None
    commit: Commit | None = None
    model_md5: Md5 | None = None
    calibrator_md5: Md5 | None = None

    @model_validator(mode="after")
    def _complete(self) -> ChampionPin:
        given = [value is not None for value in (self.version, self.commit, self.model_md5, self.calibrator_md5)]
        if any(given) and not all(given):
            raise ValueError("version, commit, model_md5 and calibrator_md5 are set together (or none)")
        return self


class Pins(Pinned):
    inflow: InflowPin = InflowPin()
    champion: ChampionPin = ChampionPin()


class PinsError(ValueError):
    """pins.yaml is unreadable or invalid; the message names the file and every problem."""


def load_pins(path: Path = DEFAULT_PINS_PATH) -> Pins:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise PinsError(f"{path}: not found; it is committed with the project (`git checkout {path}`)") from None
    except yaml.YAMLError as exc:
        raise PinsError(f"{path}: not valid YAML: {exc}") from None
    try:
        return Pins.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PinsError(f"{path}: {problems}. It is written by `make retrain`: `git checkout {path}`") from None


def render_pins(pins: Pins) -> str:
    """The file's text: the same pins give the same bytes (the publish task commits it)."""
    return HEADER + yaml.safe_dump(pins.model_dump(mode="json"), sort_keys=False)


def write_pins(pins: Pins, path: Path = DEFAULT_PINS_PATH) -> None:
    from mlcore.io import atomic_file

    with atomic_file(path) as staging:
        staging.write_text(render_pins(pins))

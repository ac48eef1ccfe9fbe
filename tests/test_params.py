from pathlib import Path

import pytest
import yaml

from mlcore.params import ParamsError, load_params
from tests.helpers import REPO_ROOT


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def default_params() -> dict:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def test_committed_params_file_is_valid():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.data.source == "sample"
    assert params.prepare.image_size == 128


def test_digest_ignores_yaml_formatting_but_not_values(tmp_path):
    data = default_params()
    first = load_params(write(tmp_path, data)).digest()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data, default_flow_style=True))
    assert load_params(tmp_path / "params.yaml").digest() == first
    data["train"]["epochs"] += 1
    assert load_params(write(tmp_path, data)).digest() != first


def test_every_problem_is_listed_with_path_value_and_rule(tmp_path):
    data = default_params()
    data["train"]["learning_rate"] = -0.1
    data["model"]["encoder"] = "resnet50"
    data["prepare"]["image_size"] = 100
    data["train"]["epochz"] = 3
    with pytest.raises(ParamsError) as error:
        load_params(write(tmp_path, data))
    message = str(error.value)
    assert "4 invalid setting(s)" in message
    assert "train.learning_rate: got -0.1" in message and "greater than 0" in message
    assert "model.encoder: got 'resnet50'" in message and "mobilenet_v2" in message
    assert "prepare.image_size: got 100" in message and "multiple of 32" in message
    assert "train.epochz: unknown key" in message


def test_missing_required_section_and_bad_checksum(tmp_path):
    data = default_params()
    data["data"]["archives"]["images"]["sha256"] = "abc"
    del data["data"]["archives"]["annotations"]
    with pytest.raises(ParamsError) as error:
        load_params(write(tmp_path, data))
    assert "data.archives.images.sha256: got 'abc'" in str(error.value)
    assert "data.archives.annotations: missing; add it (params.yaml holds every setting" in str(error.value)


def test_the_schema_has_no_defaults_of_its_own(tmp_path):
    """params.yaml holds the only values: a setting left out is an error, never a value from the code."""
    data = default_params()
    del data["train"]["adversarial"]["fraction"], data["robustness"]["seed"]
    with pytest.raises(ParamsError) as error:
        load_params(write(tmp_path, data))
    assert "2 invalid setting(s)" in str(error.value)
    assert "train.adversarial.fraction: missing" in str(error.value) and "robustness.seed: missing" in str(error.value)


def test_sample_side_bounds_are_ordered(tmp_path):
    data = default_params()
    data["data"]["sample"].update(min_side=200, max_side=100)
    with pytest.raises(ParamsError, match="min_side 200 must not exceed max_side 100"):
        load_params(write(tmp_path, data))


@pytest.mark.parametrize(
    ("content", "expected"),
    [("seed: [unclosed", "not valid YAML"), ("- a list", "expected a mapping"), (None, "not found")],
)
def test_unreadable_files(tmp_path, content, expected):
    path = tmp_path / "params.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ParamsError, match=expected):
        load_params(path)


def test_a_robust_gate_bound_must_name_a_measured_attack_and_budget(tmp_path):
    data = default_params()
    data["release"]["gate"]["min_robust_mean_iou"] = {"attack": "pgd", "epsilon": 3, "value": 0.4}
    with pytest.raises(ParamsError) as error:
        load_params(write(tmp_path, data))
    message = str(error.value)
    assert "release.gate.min_robust_mean_iou bounds pgd at epsilon 3" in message
    assert "epsilons [0, 1, 2, 4, 8]" in message and "{'seed'" not in message  # the rule, not the whole file
    data["robustness"]["epsilons"] = [0, 3]
    assert load_params(write(tmp_path, data)).release.gate.min_robust_mean_iou.epsilon == 3


def test_robustness_budgets_are_increasing_grey_levels(tmp_path):
    data = default_params()
    data["robustness"]["epsilons"] = [0, 4, 2, 300]
    with pytest.raises(ParamsError) as error:
        load_params(write(tmp_path, data))
    assert "robustness.epsilons.3: got 300" in str(error.value)
    data["robustness"]["epsilons"] = [0, 4, 2]
    with pytest.raises(ParamsError, match=r"robustness: epsilons must be increasing without repeats, got \[0, 4, 2\]$"):
        load_params(write(tmp_path, data))
    data["robustness"]["epsilons"] = [2, 4]
    with pytest.raises(ParamsError, match=r"epsilons must start at 0 \(the clean metrics"):
        load_params(write(tmp_path, data))

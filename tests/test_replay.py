"""A git tag names a model: release it, then replay it in a fresh clone and compare every hash."""

import json

import pytest

from tests.helpers import TINY_OVERRIDES, copy_project, free_port_block, git, run, write_params

IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}  # fmt: skip


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A tiny project after the same steps as `make run` and `make release VERSION=v0.1.0 STAGE=prod`."""
    root = copy_project(tmp_path_factory.mktemp("replay") / "project")
    write_params(root, TINY_OVERRIDES)
    git(root, "commit", "-qam", "tiny configuration")
    env = {"MLCORE_S3_PORT": str(free_port_block()), **IDENTITY}

    def sh(*command, check=True):
        return run(root, *command, check=check, env=env)

    sh("python", "-m", "mlcore.ops.remote", "up")
    sh("dvc", "repro")
    (root / "params.yaml").write_text((root / "params.yaml").read_text() + "\n")  # an unstaged edit
    refused = sh("python", "-m", "mlcore.stages.provenance", check=False)
    git(root, "checkout", "params.yaml")
    sh("python", "-m", "mlcore.stages.provenance")
    sh("dvc", "push", "--run-cache")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "model v0.1.0")
    sh("python", "-m", "mlcore.ops.release", "v0.1.0", "--stage", "prod")
    yield root, sh, refused
    sh("python", "-m", "mlcore.ops.remote", "down")


def test_provenance_names_commit_params_and_every_hash(released):
    root, _, refused = released
    assert refused.returncode != 0 and "uncommitted changes to params.yaml" in refused.stderr
    record = json.loads((root / "models/provenance.json").read_text())
    lock_text = (root / "dvc.lock").read_text()
    assert record["source"]["dirty"] is False and len(record["source"]["commit"]) == 40
    assert record["stages"]["train"]["outs"]["models/model.keras"] in lock_text
    assert set(record["stages"]) == {"fetch", "prepare", "train", "calibrate", "evaluate"}
    environment = record["environment"]
    assert environment["intra_op_threads"] == 2 and environment["onednn_opts"] is False
    assert environment["tensorflow"] and environment["uv_lock_sha256"] and environment["cpu_flags"]


def test_release_creates_gto_tags(released):
    root, _, _ = released
    tags = git(root, "tag").split()
    assert "model@v0.1.0" in tags and any(tag.startswith("model#prod") for tag in tags)


def test_replay_from_run_cache_matches_every_hash(released):
    _, sh, _ = released
    result = sh("python", "-m", "mlcore.ops.replay", "model@v0.1.0")
    assert "reproduced byte for byte" in result.stdout and " NO\n" not in result.stdout


def test_replay_with_retrain_matches_every_hash(released):
    _, sh, _ = released
    result = sh("python", "-m", "mlcore.ops.replay", "model@v0.1.0", "--retrain")
    assert "reproduced byte for byte" in result.stdout and " NO\n" not in result.stdout


def test_restore_refuses_a_tag_whose_lock_does_not_match_its_code(released):
    root, sh, _ = released
    evaluate = root / "mlcore/stages/evaluate.py"
    evaluate.write_text(evaluate.read_text() + "\n# a code change committed without re-running the pipeline\n")
    git(root, "commit", "-qam", "stale lock")
    git(root, "tag", "stale-lock")
    git(root, "checkout", "-q", "HEAD~1", "--", "mlcore/stages/evaluate.py")
    git(root, "commit", "-qam", "revert")
    result = sh("python", "-m", "mlcore.ops.replay", "stale-lock", check=False)
    assert result.returncode != 0
    assert "stage(s) evaluate had to be recomputed" in result.stderr


def test_retrain_names_the_first_stage_that_diverged(released):
    root, sh, _ = released
    # A commit whose params say one thing while its dvc.lock says another: retraining must catch it.
    write_params(root, {**TINY_OVERRIDES, "train": {**TINY_OVERRIDES["train"], "learning_rate": 0.01}})
    git(root, "commit", "-qam", "params changed without re-running the pipeline")
    git(root, "tag", "inconsistent")
    result = sh("python", "-m", "mlcore.ops.replay", "inconsistent", "--retrain", check=False)
    assert result.returncode != 0
    assert "first divergence in stage 'train'" in result.stderr
    rows = {line.split()[1]: line.split()[-1] for line in result.stdout.splitlines()[1:]}
    assert rows["data/prepared"] == "yes" and rows["models/model.keras"] == "NO"

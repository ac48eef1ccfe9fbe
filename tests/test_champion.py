"""Champion and challenger: the decision, the registry's prod version, rollback (real git and GTO tags), and the
champion's files fetched by md5 from the DVC cache or a real S3 remote."""

import hashlib
import json

import pytest
import yaml

from mlcore.champion import decide
from mlcore.ops import registry
from mlcore.ops.release import ReleaseRefused, register
from mlcore.storage.content import ContentError, fetch_by_md5
from mlcore.storage.seaweed import Credentials, LocalS3Server
from tests.helpers import free_port_block, git


def metrics(mean_iou: float, ece: float = 0.05) -> dict:
    return {"calibrated": {"mean_iou": mean_iou, "ece": ece}}


def test_the_challenger_may_not_be_worse_than_the_champion_beyond_the_tolerance():
    assert decide("calibrated.mean_iou", 0.01, metrics(0.5), None, "").promote
    kept = decide("calibrated.mean_iou", 0.01, metrics(0.70), metrics(0.72), "v1.0.0")
    assert not kept.promote
    assert kept.reason == (
        "calibrated.mean_iou 0.7000 against 0.7200 for v1.0.0 in prod: worse by 0.0200, more than the tolerance 0.01"
    )
    assert decide("calibrated.mean_iou", 0.01, metrics(0.715), metrics(0.72), "v1.0.0").promote
    assert decide("calibrated.mean_iou", 0.0, metrics(0.73), metrics(0.72), "v1.0.0").promote
    assert not decide("calibrated.ece", 0.01, metrics(0.7, ece=0.08), metrics(0.7, ece=0.05), "v1.0.0").promote
    assert decide("calibrated.ece", 0.01, metrics(0.7, ece=0.03), metrics(0.7, ece=0.05), "v1.0.0").promote


def test_an_empty_registry_has_no_champion_and_starts_at_v0_1_0(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "first")
    assert registry.prod_versions() == [] and registry.champion().version is None
    assert registry.next_version() == "v0.1.0"


@pytest.fixture()
def repository(tmp_path, monkeypatch):
    """A git repository with two model versions, each committed with a dvc.lock naming its model's md5."""
    monkeypatch.chdir(tmp_path)
    git(tmp_path, "init", "-q", "-b", "main")
    for version, md5 in (("v0.1.0", "1" * 32), ("v0.2.0", "2" * 32)):
        lock = {
            "schema": "2.0",
            "stages": {
                "train": {"cmd": "x", "outs": [{"path": "models/model.keras", "md5": md5}]},
                "calibrate": {
                    "cmd": "x",
                    "outs": [{"path": "models/calibrator.json", "md5": md5[::-1].replace("1", "a")}],
                },
            },
        }
        (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
        (tmp_path / "release").mkdir(exist_ok=True)
        (tmp_path / "release" / "release.json").write_text(json.dumps({"promote": True, "decision": "better"}))
        git(tmp_path, "add", "-A")
        git(tmp_path, "commit", "-qm", version)
        registry.gto("register", "model", "--version", version)
        registry.gto("assign", "model", "--version", version, "--stage", "prod")
    return tmp_path


def test_prod_next_version_champion_and_rollback(repository):
    assert registry.prod_versions() == ["v0.2.0", "v0.1.0"] and registry.next_version() == "v0.3.0"
    pin = registry.champion()
    assert (pin.version, pin.model_md5) == ("v0.2.0", "2" * 32)
    assert pin.commit == git(repository, "rev-parse", "HEAD").strip()
    assert registry.rollback() == ("v0.2.0", "v0.1.0")
    assert registry.prod_version() == "v0.1.0" and registry.champion().model_md5 == "1" * 32
    with pytest.raises(registry.RegistryError, match=r"nothing to roll back to: prod is held by v0\.1\.0 alone"):
        registry.rollback()


def test_prod_is_refused_to_a_model_worse_than_the_champion_unless_forced(repository):
    (repository / "release" / "release.json").write_text(json.dumps({"promote": False, "decision": "worse by 0.1"}))
    git(repository, "commit", "-qam", "a worse challenger")
    with pytest.raises(ReleaseRefused, match=r"worse by 0\.1; assign prod anyway with --force"):
        register("v0.3.0", registry.PROD)
    assert "model@v0.3.0" not in git(repository, "tag").split()


def test_files_come_by_md5_from_the_dvc_cache_or_the_s3_remote_and_are_checked(tmp_path, monkeypatch):
    data = b"champion weights"
    md5 = hashlib.md5(data).hexdigest()
    cache = tmp_path / "cache"
    (cache / "files/md5" / md5[:2]).mkdir(parents=True)
    (cache / "files/md5" / md5[:2] / md5[2:]).write_bytes(data)
    assert fetch_by_md5(md5, tmp_path / "a", cache) == str(cache / "files/md5" / md5[:2] / md5[2:])
    assert (tmp_path / "a").read_bytes() == data

    credentials = Credentials("contentkey", "contentsecret0123456789")
    server = LocalS3Server(tmp_path / "s3", port=free_port_block(), bucket="mlcore")
    server.start(credentials)
    try:
        client = server.client(credentials)
        client.put_object(Bucket="mlcore", Key=f"dvcstore/files/md5/{md5[:2]}/{md5[2:]}", Body=data)
        client.put_object(Bucket="mlcore", Key=f"dvcstore/files/md5/{'0' * 2}/{'0' * 30}", Body=data)  # altered
        for name, value in {
            "MLCORE_S3_BUCKET": "mlcore",
            "MLCORE_S3_PREFIX": "dvcstore",
            "MLCORE_S3_ENDPOINT": server.endpoint,
            "AWS_ACCESS_KEY_ID": credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
        }.items():
            monkeypatch.setenv(name, value)
        empty = tmp_path / "empty-cache"
        assert fetch_by_md5(md5, tmp_path / "b", empty).startswith("s3://mlcore/dvcstore/files/md5/")
        assert (tmp_path / "b").read_bytes() == data
        with pytest.raises(ContentError, match="is corrupt"):
            fetch_by_md5("0" * 32, tmp_path / "c", empty)
        assert not (tmp_path / "c").exists()
        with pytest.raises(ContentError, match="make push"):
            fetch_by_md5("f" * 32, tmp_path / "d", empty)
    finally:
        server.stop()

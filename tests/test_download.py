"""The real download path, served from loopback: resume, retries, checksum refusal, and the fetch stage."""

import hashlib

import pytest

from mlcore.data.download import ChecksumMismatch, DownloadError, fetch_verified
from mlcore.data.sample import write_sample_archives
from tests.helpers import FileServer, copy_project, run, write_params


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archives")
    write_sample_archives(folder, 24, 5, include_quirks=True)
    return folder


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_verifies_and_caches(archives, tmp_path):
    with FileServer(archives).running() as server:
        expected = sha256(archives / "images.tar.gz")
        got = fetch_verified(f"{server.url}/images.tar.gz", expected, tmp_path, 0, 10, 0)
        assert sha256(got) == expected
        fetch_verified(f"{server.url}/images.tar.gz", expected, tmp_path, 0, 10, 0)
    assert len(server.requests) == 1  # the verified copy is reused, not downloaded again


def test_interrupted_download_resumes_with_a_range_request(archives, tmp_path):
    server = FileServer(archives)
    server.cut_after, server.cuts_left = 100_000, 2
    with server.running():
        expected = sha256(archives / "images.tar.gz")
        got = fetch_verified(f"{server.url}/images.tar.gz", expected, tmp_path, 3, 10, 0)
    assert sha256(got) == expected
    ranges = [r["range"] for r in server.requests]
    assert len(ranges) == 3 and ranges[0] is None
    offsets = [int(r.removeprefix("bytes=").rstrip("-")) for r in ranges[1:]]
    assert 0 < offsets[0] <= 100_000 < offsets[1] <= 200_000  # each retry asks only for the missing bytes


def test_wrong_checksum_is_refused_and_nothing_is_kept(archives, tmp_path):
    with FileServer(archives).running() as server, pytest.raises(ChecksumMismatch) as error:
        fetch_verified(f"{server.url}/images.tar.gz", "0" * 64, tmp_path, 0, 10, 0)
    assert "params.yaml pins " + "0" * 64 in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_retries_give_up_with_a_clear_error(archives, tmp_path):
    with FileServer(archives).running() as server, pytest.raises(DownloadError) as error:
        fetch_verified(f"{server.url}/missing.tar.gz", "0" * 64, tmp_path, 2, 10, 0)
    assert "after 3 attempts" in str(error.value) and "404" in str(error.value)


def oxford_source(server_url: str, archives) -> dict:
    return {
        "data": {
            "source": "oxford-iiit-pet",
            "archives": {
                name: {"url": f"{server_url}/{name}.tar.gz", "sha256": sha256(archives / f"{name}.tar.gz")}
                for name in ("images", "annotations")
            },
        }
    }


def test_fetch_stage_downloads_the_oxford_layout(archives, tmp_path):
    project = copy_project(tmp_path / "project")
    with FileServer(archives).running() as server:
        write_params(project, oxford_source(server.url, archives))
        run(project, "python", "-m", "mlcore.stages", "fetch", env={"MLCORE_DOWNLOAD_CACHE": str(tmp_path / "cache")})
    for name in ("images.tar.gz", "annotations.tar.gz"):
        assert sha256(project / "data/raw" / name) == sha256(archives / name)


def test_fetch_stage_with_a_wrong_checksum_writes_nothing(archives, tmp_path):
    project = copy_project(tmp_path / "project")
    with FileServer(archives).running() as server:
        overrides = oxford_source(server.url, archives)
        overrides["data"]["archives"]["annotations"]["sha256"] = "f" * 64
        write_params(project, overrides)
        result = run(
            project,
            "python",
            "-m",
            "mlcore.stages",
            "fetch",
            check=False,
            env={"MLCORE_DOWNLOAD_CACHE": str(tmp_path / "cache")},
        )
    assert result.returncode != 0
    assert "data.archives.annotations" in result.stderr and "params.yaml pins " + "f" * 64 in result.stderr
    assert "Traceback" not in result.stderr
    assert list((project / "data").iterdir()) == []  # no data/raw, no half-written staging folder


def test_invalid_params_stop_every_stage_before_any_work(tmp_path):
    project = copy_project(tmp_path / "project")
    write_params(project, {"train": {"epochs": 0}, "data": {"source": "kaggle"}})
    result = run(project, "python", "-m", "mlcore.stages", "fetch", check=False)
    assert result.returncode != 0
    assert "train.epochs: got 0" in result.stderr and "data.source: got 'kaggle'" in result.stderr
    assert not (project / "data").exists()

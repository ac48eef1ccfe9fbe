"""The S3 DVC remote on a real SeaweedFS server: round trips, credentials, and faults.

Each project starts its own server through the same command `make s3-up` runs, on free ports.
"""

import hashlib
import os
import signal
import subprocess
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from mlcore.ops.dvc_state import default_remote
from tests.helpers import TINY_OVERRIDES, VENV_BIN, copy_project, free_port_block, git, run, write_params

pytestmark = pytest.mark.slow  # trains, serves or moves real data: `make test-fast` skips it


def md5_tree(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class Project:
    """A project copy with its own S3 server; `sh` runs a command there with that server's port."""

    def __init__(self, root, port):
        self.root, self.env = root, {"MLCORE_S3_PORT": str(port)}

    def sh(self, *command, check=True):
        return run(self.root, *command, check=check, env=self.env)

    def remote(self):
        cwd = os.getcwd()
        os.chdir(self.root)
        try:
            return default_remote()
        finally:
            os.chdir(cwd)


@pytest.fixture
def project(tmp_path):
    root = copy_project(tmp_path / "project")
    write_params(root, TINY_OVERRIDES)
    git(root, "commit", "-qam", "tiny configuration")
    project = Project(root, free_port_block())
    project.sh("python", "-m", "mlcore.ops.remote", "up")
    yield project
    project.sh("python", "-m", "mlcore.ops.remote", "down")


def prepared_and_pushed(project):
    project.sh("dvc", "repro", "prepare")
    project.sh("python", "-m", "mlcore.ops.remote", "check")
    project.sh("dvc", "push")
    git(project.root, "add", "dvc.lock", "data/.gitignore")
    git(project.root, "commit", "-qm", "prepared data")


def test_credentials_stay_out_of_git_and_are_required(project):
    remote = project.remote()
    assert remote.endpoint.startswith("http://127.0.0.1:") and remote.secret_key
    tracked = git(project.root, "ls-files").split()
    assert all(remote.secret_key not in (project.root / name).read_text(errors="ignore") for name in tracked)
    assert ".dvc/config.local" not in tracked
    assert oct((project.root / ".cache/s3/identities.json").stat().st_mode & 0o777) == "0o600"
    assert oct((project.root / ".dvc/config.local").stat().st_mode & 0o777) == "0o600"  # it holds the keys
    assert remote.secret_key not in repr(remote)
    anonymous = boto3.client(
        "s3",
        endpoint_url=remote.endpoint,
        region_name="us-east-1",
        aws_access_key_id="nobody",
        aws_secret_access_key="wrong",
    )
    with pytest.raises(ClientError):
        anonymous.list_objects_v2(Bucket=remote.bucket)
    assert remote.client().list_objects_v2(Bucket=remote.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_push_then_pull_in_a_fresh_clone(project, tmp_path):
    prepared_and_pushed(project)
    assert "0 problem(s)" in project.sh("python", "-m", "mlcore.ops.verify").stdout
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project.root), str(clone))
    (clone / ".dvc/config.local").write_text((project.root / ".dvc/config.local").read_text())
    run(clone, "dvc", "pull", "prepare")
    assert md5_tree(clone / "data/prepared") == md5_tree(project.root / "data/prepared")


def test_wrong_secret_is_a_clear_error_that_names_the_remote_and_hides_the_secret(project):
    project.sh("dvc", "repro", "prepare")
    project.sh("dvc", "remote", "modify", "--local", "storage", "secret_access_key", "not-the-secret")
    result = project.sh("python", "-m", "mlcore.ops.remote", "check", check=False)
    assert result.returncode != 0
    assert "remote 'storage'" in result.stderr and "refused the credentials" in result.stderr
    assert "not-the-secret" not in result.stderr + result.stdout
    pushed = project.sh("dvc", "push", check=False)
    assert pushed.returncode != 0 and "not-the-secret" not in pushed.stderr + pushed.stdout
    project.sh("python", "-m", "mlcore.ops.remote", "down")
    project.sh("dvc", "remote", "modify", "--local", "storage", "--unset", "secret_access_key")
    project.sh("dvc", "remote", "modify", "--local", "storage", "--unset", "access_key_id")


def test_server_not_running_says_how_to_start_it(project):
    project.sh("python", "-m", "mlcore.ops.remote", "down")
    result = project.sh("python", "-m", "mlcore.ops.remote", "check", check=False)
    assert result.returncode != 0 and "is not reachable: start it with `make s3-up`" in result.stderr
    assert "not running" in project.sh("python", "-m", "mlcore.ops.remote", "status").stdout


def test_deleted_and_altered_objects_are_detected(project, tmp_path):
    prepared_and_pushed(project)
    remote = project.remote()
    client = remote.client()
    shards = sorted((project.root / "data/prepared").glob("train-*.tfrecord"))
    deleted, altered = (hashlib.md5(path.read_bytes()).hexdigest() for path in shards[:2])
    client.delete_object(Bucket=remote.bucket, Key=remote.object_key(deleted))
    client.put_object(Bucket=remote.bucket, Key=remote.object_key(altered), Body=b"tampered")

    result = project.sh("python", "-m", "mlcore.ops.verify", check=False)
    assert result.returncode == 1
    assert f"{deleted}" in result.stdout and "missing from the remote" in result.stdout
    assert f"{altered}" in result.stdout and "altered on the remote" in result.stdout

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project.root), str(clone))
    (clone / ".dvc/config.local").write_text((project.root / ".dvc/config.local").read_text())
    pulled = run(clone, "dvc", "pull", "prepare", check=False)
    assert pulled.returncode != 0  # DVC (verify = true) refuses the altered object and lacks the deleted one
    assert not (clone / "data/prepared").exists() or md5_tree(clone / "data/prepared") != md5_tree(
        project.root / "data/prepared"
    )


def test_server_killed_during_push_then_push_completes(project, tmp_path):
    big = project.root / "data" / "big.bin"
    big.parent.mkdir(exist_ok=True)
    big.write_bytes(os.urandom(192 << 20))
    project.sh("dvc", "add", "data/big.bin")
    env = {**os.environ, **project.env, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    push = subprocess.Popen(
        ["dvc", "push", "data/big.bin.dvc"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(1.0)
    server_pid = int((project.root / ".cache/s3/weed.pid").read_text())
    os.kill(server_pid, signal.SIGKILL)
    output, _ = push.communicate(timeout=300)
    assert push.returncode != 0, output
    assert "failed to push" in output.lower() or "error" in output.lower()

    project.sh("python", "-m", "mlcore.ops.remote", "up")  # restart on the same data directory
    project.sh("dvc", "push", "data/big.bin.dvc")
    git(project.root, "add", "data/big.bin.dvc", "data/.gitignore")
    git(project.root, "commit", "-qm", "big file")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project.root), str(clone))
    (clone / ".dvc/config.local").write_text((project.root / ".dvc/config.local").read_text())
    run(clone, "dvc", "pull", "data/big.bin.dvc")
    assert hashlib.md5((clone / "data/big.bin").read_bytes()).digest() == hashlib.md5(big.read_bytes()).digest()

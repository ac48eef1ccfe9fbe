"""Check every cached output of dvc.lock against the remote, object by object.

`dvc status -c` trusts the remote's directory listing and misses a deleted object; this looks at each
object itself: it must exist, and its content must hash to its name (the S3 ETag of a single-part
upload is its md5; multipart objects are downloaded and hashed).

`python -m mlcore.ops.verify` exits non-zero and names every missing or altered object.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from mlcore.ops.dvc_state import S3Remote, default_remote


@dataclass(frozen=True)
class Problem:
    stage: str
    output: str
    object_md5: str
    what: str


def _content_md5(client, bucket: str, key: str) -> str:
    digest = hashlib.md5()
    for chunk in client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def check_object(remote: S3Remote, client, md5: str) -> str | None:
    """None if the object is intact, else what is wrong with it."""
    from botocore.exceptions import ClientError

    key = remote.object_key(md5)
    try:
        etag = client.head_object(Bucket=remote.bucket, Key=key)["ETag"].strip('"')
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return f"missing from the remote ({key})"
        raise
    expected = md5.removesuffix(".dir")
    actual = etag if "-" not in etag else _content_md5(client, remote.bucket, key)
    return None if actual == expected else f"altered on the remote: content md5 {actual} ({key})"


def _dir_entries(remote: S3Remote, client, dir_md5: str, cache_dir: Path) -> list[str]:
    local = cache_dir / "files" / "md5" / dir_md5[:2] / dir_md5[2:]
    listing = (
        local.read_bytes()
        if local.exists()
        else client.get_object(Bucket=remote.bucket, Key=remote.object_key(dir_md5))["Body"].read()
    )
    return [entry["md5"] for entry in json.loads(listing)]


def verify(repo_root: Path = Path(".")) -> tuple[int, list[Problem]]:
    """(number of objects checked, problems) for every cached output recorded in dvc.lock."""
    from dvc.repo import Repo

    remote = default_remote(repo_root)
    client = remote.client()
    problems: list[Problem] = []
    checked = 0
    with Repo(str(repo_root)) as repo:
        cache_dir = Path(repo.cache.local.path).parent.parent
        outputs = [  # cached outputs that dvc.lock records (a stage that never ran has none)
            (stage.name, out)
            for stage in repo.index.stages
            for out in stage.outs
            if out.use_cache and out.hash_info.value
        ]
    for stage, out in outputs:
        md5 = out.hash_info.value
        objects = [md5]
        if out.hash_info.isdir and check_object(remote, client, md5) is None:
            objects += _dir_entries(remote, client, md5, cache_dir)
        for object_md5 in objects:
            checked += 1
            if (what := check_object(remote, client, object_md5)) is not None:
                problems.append(Problem(stage, out.def_path, object_md5, what))
    return checked, problems


def main() -> None:
    try:
        checked, problems = verify()
    except Exception as exc:  # a clear one-line reason (network, credentials) instead of a traceback
        sys.exit(f"error: could not verify the remote: {exc}")
    for problem in problems:
        print(f"{problem.stage:<10} {problem.output:<32} {problem.object_md5:<40} {problem.what}")
    print(f"{checked} objects checked, {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

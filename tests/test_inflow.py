"""The inflow: a listing pinned by cut-off and digest becomes a content-addressed, deduplicated, checked snapshot
(real files, a real S3 server); prepare merges it without moving any existing sample between splits."""

import datetime
import hashlib
import io
import json
import os
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from mlcore.data.inflow import Listed, before, listing_digest, listing_text, new_images, parse_listing, take
from mlcore.data.prepare import collect
from mlcore.data.sample import write_sample_archives
from mlcore.data.split import split_of
from mlcore.pins import InflowPin, Pins, PinsError, load_pins, render_pins, write_pins
from mlcore.storage.seaweed import Credentials, LocalS3Server
from tests.helpers import REPO_ROOT, VENV_BIN, drop_inflow, free_port_block, sample_pairs

T0 = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)


def listed(key: str, data: bytes, minute: int = 0) -> Listed:
    return Listed(key, len(data), hashlib.md5(data).hexdigest(), T0 + datetime.timedelta(minutes=minute))


def bucket_of(files: dict[str, bytes]) -> tuple[list[Listed], callable]:
    listing = [listed(key, data) for key, data in files.items()]
    return listing, lambda item: files[item.key]


def _other_trimap(trimap: bytes) -> bytes:
    """The same trimap with pet and background swapped: another user's correction of the same image."""
    pixels = np.asarray(Image.open(io.BytesIO(trimap)))
    swapped, buffer = np.choose(pixels - 1, [2, 1, 3]).astype(np.uint8), io.BytesIO()
    Image.fromarray(swapped).save(buffer, format="PNG")
    return buffer.getvalue()


def _other_trimap(trimap: bytes) -> bytes:
    """The same trimap with pet and background swapped: another user's correction of the same image."""
    pixels = np.asarray(Image.open(io.BytesIO(trimap)))
    swapped, buffer = np.choose(pixels - 1, [2, 1, 3]).astype(np.uint8), io.BytesIO()
    Image.fromarray(swapped).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_snapshot_is_content_addressed_deduplicated_and_accounts_for_every_object():
    (a, image_a, trimap_a), (b, image_b, trimap_b) = sample_pairs(2, seed=1)
    files = {
        f"feedback/images/{a}.jpg": image_a,
        f"feedback/annotations/trimaps/{a}.png": trimap_a,
        f"inflow/images/{b}.jpg": image_b,
        f"inflow/annotations/trimaps/{b}.png": trimap_b,
        "inflow/images/copy.jpg": image_a,
        "inflow/annotations/trimaps/copy.png": _other_trimap(trimap_a),  # the same image, another correction
        "inflow/images/broken.jpg": b"GIF89a",
        "inflow/annotations/trimaps/broken.png": trimap_a,
        "inflow/images/alone.jpg": image_b,
        "inflow/annotations/trimaps/orphan.png": trimap_b,
        "feedback/metadata/x.json": b"{}",
        "inflow/README": b"not a sample",
    }
    written = {}
    snapshot = take(*bucket_of(files), written.__setitem__)
    ids = [row["id"] for row in snapshot.samples]
    assert ids == [
        f"inflow_{hashlib.sha256(image_a).hexdigest()[:16]}",
        f"inflow_{hashlib.sha256(image_b).hexdigest()[:16]}",
    ]
    assert written[f"images/{ids[0]}.jpg"] == image_a and written[f"annotations/trimaps/{ids[1]}.png"] == trimap_b
    assert snapshot.duplicates == [{"image": "inflow/images/copy.jpg", "same_as": ids[0], "same_trimap": False}]
    reasons = {row["image"] or row["trimap"]: row["reason"] for row in snapshot.quarantined}
    assert reasons["inflow/images/broken.jpg"].startswith("corrupt_image")
    assert reasons["inflow/images/alone.jpg"] == "missing_trimap"
    assert reasons["inflow/annotations/trimaps/orphan.png"].startswith("missing_image")
    kept = {row["image_file"] for row in snapshot.quarantined if "image_file" in row}
    assert all(written[path] for path in kept)  # the rejected bytes are kept for a person to look at
    assert snapshot.summary() == {
        "taken": 2,
        "duplicates": 1,
        "quarantined": 3,
        "by_reason": {"corrupt_image": 1, "missing_image": 1, "missing_trimap": 1},
    }
    rewritten = {}
    again = take(*bucket_of(dict(reversed(files.items()))), rewritten.__setitem__)  # the listing's order is no matter
    assert rewritten == written and again.manifest(T0, "d", 1) == snapshot.manifest(T0, "d", 1)


def test_the_listing_digest_and_cutoff_pin_exactly_which_objects_are_taken():
    ((_, image, trimap),) = sample_pairs(1, seed=2)
    listing = [listed("inflow/images/a.jpg", image, 0), listed("inflow/annotations/trimaps/a.png", trimap, 5)]
    assert before(listing, T0 + datetime.timedelta(minutes=5)) == listing[:1]
    assert new_images(listing, []) == listing[:1] and new_images(listing, listing) == []
    resent = Listed(listing[0].key, listing[0].size, listing[0].etag, T0 + datetime.timedelta(hours=1))
    assert new_images([resent], listing) == [], "the same bytes sent again are not new"
    replaced = Listed(listing[0].key, listing[0].size, "f" * 32, T0 + datetime.timedelta(hours=1))
    assert new_images([replaced], listing) == [replaced]
    assert parse_listing(listing_text(listing)) == sorted(
        (Listed(i.key, i.size, i.etag) for i in listing), key=lambda i: i.key
    )
    digest = listing_digest(listing)
    assert listing_digest(list(reversed(listing))) == digest
    changed = [listing[0], Listed(listing[1].key, listing[1].size, "0" * 32, listing[1].modified)]
    assert listing_digest(changed) != digest and listing_digest(listing[:1]) != digest


def test_pins_round_trip_and_a_bad_pins_file_names_the_field(tmp_path):
    pins = Pins(inflow=InflowPin(cutoff=T0, objects=3, listing_sha256="a" * 64))
    write_pins(pins, tmp_path / "pins.yaml")
    assert load_pins(tmp_path / "pins.yaml") == pins
    assert render_pins(pins) == (tmp_path / "pins.yaml").read_text()
    (tmp_path / "pins.yaml").write_text("inflow: {cutoff: 2026-11-30T12:00:00Z, objects: 3}\n")
    with pytest.raises(PinsError, match=r"pins.yaml: inflow: .*cutoff and listing_sha256 are set together"):
        load_pins(tmp_path / "pins.yaml")
    (tmp_path / "pins.yaml").write_text("champion: {version: 1.0}\n")
    with pytest.raises(PinsError, match=r"champion.version"):
        load_pins(tmp_path / "pins.yaml")


@pytest.fixture()
def inflow_project(tmp_path):
    """The inflow stage's working folder, with a real S3 server holding a drop of samples."""
    credentials = Credentials("inflowkey", "inflowsecret0123456789")
    server = LocalS3Server(tmp_path / "s3", port=free_port_block(), bucket="mlcore")
    server.start(credentials)
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO_ROOT),
        "MLCORE_S3_ENDPOINT": server.endpoint,
        "MLCORE_S3_BUCKET": "mlcore",
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
    }
    try:
        yield project, server.client(credentials), env
    finally:
        server.stop()


def _stage(project, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["python", "-m", "mlcore.stages", "inflow"], cwd=project, env=env, capture_output=True, text=True
    )


def _pin(project, client) -> None:
    """What `make retrain` pins: everything listed now (the keys come from the AWS_* variables)."""
    from mlcore.storage.inflow import InflowBucket
    from mlcore.storage.s3 import S3Prefix

    objects = client.list_objects_v2(Bucket="mlcore")["Contents"]
    cutoff = max(item["LastModified"] for item in objects).replace(microsecond=0) + datetime.timedelta(seconds=1)
    bucket = InflowBucket(S3Prefix("mlcore", "", client.meta.endpoint_url), ("feedback", "inflow"))
    listing = before(bucket.list(), cutoff)
    pin = InflowPin(cutoff=cutoff, objects=len(listing), listing_sha256=bucket.save_listing(listing))
    write_pins(Pins(inflow=pin), project / "pins.yaml")


def test_the_inflow_stage_takes_the_pinned_snapshot_byte_identically_and_refuses_a_changed_bucket(
    inflow_project, monkeypatch
):
    project, client, env = inflow_project
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, env[name])
    write_pins(Pins(), project / "pins.yaml")
    empty = _stage(project, env)  # nothing pinned: an empty snapshot, without asking the bucket
    assert empty.returncode == 0, empty.stderr
    assert json.loads((project / "data/inflow/manifest.json").read_text())["samples"] == []

    drop_inflow(client, "mlcore", "inflow", 4, seed=8)
    client.put_object(Bucket="mlcore", Key="inflow/images/broken.jpg", Body=b"not a JPEG")
    _pin(project, client)
    first = _stage(project, env)
    assert first.returncode == 0, first.stderr
    snapshot = sorted(p.relative_to(project) for p in (project / "data/inflow").rglob("*") if p.is_file())
    contents = {p: (project / p).read_bytes() for p in snapshot}
    manifest = json.loads((project / "data/inflow/manifest.json").read_text())
    assert manifest["summary"]["taken"] == 4 and manifest["quarantined"][0]["image"] == "inflow/images/broken.jpg"
    assert _stage(project, env).returncode == 0  # again: byte-identical
    assert {p: (project / p).read_bytes() for p in snapshot} == contents

    time.sleep(1.1)  # S3 times have whole seconds: what comes now is after the cut-off (inflow.settle_s does this)
    drop_inflow(client, "mlcore", "feedback", 1, seed=9)  # arrives after the cut-off: not taken, no complaint
    assert _stage(project, env).returncode == 0
    assert json.loads((project / "data/inflow/manifest.json").read_text()) == manifest
    (key,) = [k for k in snapshot_keys(manifest) if k.endswith(".jpg") and "broken" not in k][:1]
    client.put_object(Bucket="mlcore", Key=key, Body=client.get_object(Bucket="mlcore", Key=key)["Body"].read())
    assert _stage(project, env).returncode == 0, "a resend of the same bytes changes nothing"
    client.put_object(Bucket="mlcore", Key=key, Body=b"other bytes")  # a pinned object replaced: refused
    refused = _stage(project, env)
    assert refused.returncode != 0 and f"s3://mlcore/{key} changed since the snapshot was pinned" in refused.stderr
    assert "append-only" in refused.stderr
    assert {p: (project / p).read_bytes() for p in snapshot} == contents, "a refused run must leave the snapshot"


def snapshot_keys(manifest: dict) -> list[str]:
    return sorted(row["image"] for row in manifest["samples"])


def test_prepare_merges_the_inflow_without_moving_any_existing_sample(tmp_path):
    raw = tmp_path / "raw"
    write_sample_archives(raw, 60, 2019, include_quirks=False, min_side=40, max_side=64)
    from mlcore.data.inflow import InflowSample
    from mlcore.data.oxford import iter_images, read_annotations

    before_merge = collect(raw, 32)
    new = [
        InflowSample(f"inflow_{i:016x}", image, trimap, hashlib.sha256(image).hexdigest())
        for i, (_, image, trimap) in enumerate(sample_pairs(20, seed=6))
    ]
    oxford = dict(iter_images(raw / "images.tar.gz"))
    oxford_id, oxford_image = next(iter(oxford.items()))
    copy = InflowSample("inflow_copy", oxford_image, new[0].trimap, hashlib.sha256(oxford_image).hexdigest())
    # a test image sent back as feedback: the server re-encodes it (JPEG quality 95), so its bytes differ
    test_id = before_merge.by_split["test"][0].sample_id
    buffer = io.BytesIO()
    Image.open(io.BytesIO(oxford[test_id])).convert("RGB").save(buffer, format="JPEG", quality=95)
    trimap = read_annotations(raw / "annotations.tar.gz").trimaps[test_id]
    resent = InflowSample("inflow_resent", buffer.getvalue(), trimap, hashlib.sha256(buffer.getvalue()).hexdigest())
    merged = collect(raw, 32, [*new, copy, resent])
    for split, samples in before_merge.by_split.items():
        old_ids = {s.sample_id for s in samples}
        merged_ids = {s.sample_id for s in merged.by_split[split]}
        assert old_ids <= merged_ids, f"{split} lost a sample"
        assert all(i.startswith("inflow_") and split_of(i) == split for i in merged_ids - old_ids)
    taken = {s.sample_id for v in merged.by_split.values() for s in v}
    assert merged.inflow == 20 and not {"inflow_copy", "inflow_resent"} & taken
    near = next(row for row in merged.report if row["file"] == "inflow/images/inflow_resent.jpg")
    assert near["outcome"] == "duplicate" and near["reasons"][0].startswith(f"near_duplicate_of: {test_id} (")
    duplicate = next(row for row in merged.report if row["file"] == "inflow/images/inflow_copy.jpg")
    assert duplicate == {
        "file": "inflow/images/inflow_copy.jpg",
        "outcome": "duplicate",
        "reasons": [f"duplicate_of: {oxford_id}"],
    }

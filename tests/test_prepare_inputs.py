"""prepare on hostile inputs: undecodable files get stable reasons (two runs, byte-identical outputs), samples
missing from an archive get report rows and count toward the bad fraction, and a damaged archive is a clear
error naming the file and the params.yaml setting it comes from, in fetch and in prepare."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from mlcore.data.oxford import ANNOTATIONS_ARCHIVE, IMAGES_ARCHIVE
from mlcore.data.prepare import collect
from mlcore.data.sample import write_sample_archives
from mlcore.params import load_params
from mlcore.stages._common import StageError
from mlcore.stages.fetch import check_archives
from tests.helpers import REPO_ROOT, copy_project, run, write_params


def rewrite_archive(archive: Path, extra: dict[str, bytes], drop: set[str] = frozenset()) -> None:
    """Add members to (or drop them from) a .tar.gz, deterministically."""
    with tarfile.open(archive, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile() and m.name not in drop]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data))
        for name, data in sorted(extra.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))


def sample_with_bad_files(raw: Path) -> None:
    write_sample_archives(raw, 40, seed=3, include_quirks=False, min_side=40, max_side=48)
    rewrite_archive(raw / IMAGES_ARCHIVE, {"images/Abyssinian_901.jpg": b"", "images/Abyssinian_902.jpg": b"GIF8?"})


@pytest.mark.slow
def test_two_prepare_runs_with_an_empty_and_an_unidentifiable_image_are_byte_identical(tmp_path):
    project = copy_project(tmp_path / "project")
    write_params(project, {"prepare": {"image_size": 32, "samples_per_shard": 16, "max_bad_fraction": 0.2}})
    sample_with_bad_files(project / "data" / "raw")
    run(project, "python", "-m", "mlcore.stages", "inflow")  # nothing pinned: an empty snapshot
    outputs = []
    for _ in range(2):  # separate processes: a memory address in a message would differ
        run(project, "python", "-m", "mlcore.stages", "prepare")
        prepared = project / "data" / "prepared"
        outputs.append({p.relative_to(prepared): p.read_bytes() for p in sorted(prepared.rglob("*")) if p.is_file()})
    assert outputs[0] == outputs[1]
    report = outputs[0][Path("report.json")].decode()
    assert "0x" not in report and report.count("not an image format Pillow can identify") == 2


def test_samples_missing_from_an_archive_get_report_rows_and_count(tmp_path):
    raw = tmp_path / "raw"
    write_sample_archives(raw, 40, seed=3, include_quirks=False, min_side=40, max_side=48)
    complete = collect(raw, 16)
    with tarfile.open(raw / IMAGES_ARCHIVE, "r:gz") as tar:
        first_image = next(m.name for m in tar.getmembers() if m.name.endswith(".jpg"))
    rewrite_archive(raw / IMAGES_ARCHIVE, {}, drop={first_image})
    rewrite_archive(raw / ANNOTATIONS_ARCHIVE, {"annotations/trimaps/orphan_1.png": b"\x89PNG"})
    collected = collect(raw, 16)
    rows = {row["file"]: row for row in collected.report}
    assert rows[first_image]["reasons"] == ["missing_image: listed in annotations/list.txt"]
    assert rows["annotations/trimaps/orphan_1.png"]["reasons"] == ["missing_image: a trimap without an image"]
    assert collected.quarantined == complete.quarantined + 2 and collected.seen == complete.seen + 1


@pytest.mark.parametrize(
    ("damage", "detail"),
    [(lambda data: data[: len(data) // 2], "end of"), (lambda data: b"<html>404</html>", "gzip")],
    ids=["truncated", "not-gzip"],
)
def test_a_damaged_archive_names_the_file_and_its_params_key(tmp_path, damage, detail):
    raw = tmp_path / "raw"
    write_sample_archives(raw, 20, seed=3, include_quirks=False, min_side=40, max_side=48)
    archive = raw / IMAGES_ARCHIVE
    archive.write_bytes(damage(archive.read_bytes()))
    params = load_params(REPO_ROOT / "params.yaml")
    downloaded = params.revised(data=params.data.revised(source="oxford-iiit-pet"))
    with pytest.raises(StageError, match=rf"{archive}: not a complete \.tar\.gz archive \(.*{detail}") as error:
        check_archives(downloaded, raw)  # fetch checks what it downloaded before it becomes data/raw
    assert "params.yaml data.archives.images" in str(error.value)

    project = copy_project(tmp_path / "project")
    (project / "data").mkdir(exist_ok=True)
    raw.rename(project / "data" / "raw")
    result = run(project, "python", "-m", "mlcore.stages", "prepare", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "error: data/raw/images.tar.gz: not a complete .tar.gz archive" in result.stderr
    assert "params.yaml data.sample" in result.stderr

"""fetch: put images.tar.gz and annotations.tar.gz into data/raw/, from the network or the sample."""

from __future__ import annotations

import os
from pathlib import Path

from mlcore.data.download import DownloadError, fetch_verified, link_or_copy
from mlcore.data.oxford import ArchiveError, check_archive
from mlcore.data.sample import write_sample_archives
from mlcore.io import atomic_dir
from mlcore.params import Params
from mlcore.stages._common import ARCHIVE_FILES, StageError, archive_origin
from mlcore.stages.paths import RAW_DIR


def download_cache() -> Path:
    return Path(os.environ.get("MLCORE_DOWNLOAD_CACHE", ".cache/downloads"))


def check_archives(params: Params, folder: Path) -> None:
    """Every archive reads to its end as a .tar.gz: a damaged one fails where it came from, naming its origin."""
    for file_name in ARCHIVE_FILES.values():
        try:
            check_archive(folder / file_name)
        except ArchiveError as exc:
            raise StageError(f"{exc}; it comes from {archive_origin(params, file_name)}") from exc


def run(params: Params) -> None:
    with atomic_dir(RAW_DIR) as staging:
        write_archives(params, staging)
        check_archives(params, staging)


def write_archives(params: Params, staging: Path) -> None:
    data = params.data
    if data.source == "sample":
        sample = data.sample
        write_sample_archives(
            staging, sample.num_images, sample.seed, sample.include_quirks, sample.min_side, sample.max_side
        )
    else:
        for key, file_name in ARCHIVE_FILES.items():
            spec = getattr(data.archives, key)
            try:
                cached = fetch_verified(
                    spec.url,
                    spec.sha256,
                    download_cache(),
                    data.download.retries,
                    data.download.timeout_s,
                    data.download.backoff_s,
                )
            except DownloadError as exc:
                raise StageError(f"data.archives.{key}: {exc}") from exc
            link_or_copy(cached, staging / file_name)

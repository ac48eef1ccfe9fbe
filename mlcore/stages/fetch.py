"""fetch: put images.tar.gz and annotations.tar.gz into data/raw/, from the network or the sample."""

from __future__ import annotations

import os
from pathlib import Path

from mlcore.data.download import DownloadError, fetch_verified, link_or_copy
from mlcore.data.oxford import ANNOTATIONS_ARCHIVE, IMAGES_ARCHIVE
from mlcore.data.sample import write_sample_archives
from mlcore.io import atomic_dir
from mlcore.params import Params
from mlcore.stages._common import StageError, run_stage
from mlcore.stages.paths import RAW_DIR

ARCHIVE_FILES = {"images": IMAGES_ARCHIVE, "annotations": ANNOTATIONS_ARCHIVE}


def download_cache() -> Path:
    return Path(os.environ.get("MLCORE_DOWNLOAD_CACHE", ".cache/downloads"))


def fetch(params: Params) -> None:
    data = params.data
    with atomic_dir(RAW_DIR) as staging:
        if data.source == "sample":
            sample = data.sample
            write_sample_archives(
                staging, sample.num_images, sample.seed, sample.include_quirks, sample.min_side, sample.max_side
            )
            return
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


if __name__ == "__main__":
    run_stage(fetch)

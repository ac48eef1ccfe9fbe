"""Download a pinned archive: progress bar, retries with backoff, resume by HTTP Range, sha256 check.

Partial and verified downloads live in a cache outside the stage's output (DVC deletes a stage's
outputs before re-running it), so an interrupted 800 MB download resumes instead of restarting, and
a forced re-run reuses the verified file.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import requests
from tqdm import tqdm

from mlcore.io import file_hexdigest

log = logging.getLogger(__name__)
NETWORK_CHUNK_BYTES = 1 << 16  # small, so a dropped connection loses little of what arrived


class DownloadError(RuntimeError):
    """The archive could not be fetched after every retry."""


class ChecksumMismatch(DownloadError):
    """The bytes received are not the pinned archive; nothing is kept."""


def _stream(url: str, part: Path, timeout_s: float) -> None:
    """Append the rest of `url` to `part`, asking only for the bytes it lacks."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=timeout_s) as response:
        if response.status_code == 416:  # we already hold every byte
            return
        response.raise_for_status()
        if have and response.status_code != 206:
            log.warning("%s: server ignored the Range request; starting over", url)
            have = 0
        expected = response.headers.get("Content-Length")
        total = have + int(expected) if expected is not None else None
        with (
            part.open("ab" if have else "wb") as out,
            tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=part.name) as bar,
        ):
            for chunk in response.iter_content(NETWORK_CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
        if total is not None and part.stat().st_size < total:
            raise requests.ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")


def fetch_verified(url: str, sha256: str, cache_dir: Path, retries: int, timeout_s: float, backoff_s: float) -> Path:
    """Return a cached file whose sha256 is `sha256`, downloading (and resuming) as needed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / sha256
    if final.exists() and file_hexdigest(final) == sha256:
        log.info("%s: using verified copy in %s", url, final)
        return final
    part = cache_dir / f"{sha256}.part"
    for attempt in range(retries + 1):
        try:
            _stream(url, part, timeout_s)
            break
        except requests.RequestException as exc:
            if attempt == retries:
                raise DownloadError(
                    f"{url}: download failed after {retries + 1} attempts: {exc}. "
                    f"The partial file {part} is kept; re-run to resume."
                ) from exc
            delay = backoff_s * 2**attempt
            log.warning("%s: %s; retry %d/%d in %.1fs", url, exc, attempt + 1, retries, delay)
            time.sleep(delay)
    got = file_hexdigest(part)
    if got != sha256:
        part.unlink()
        raise ChecksumMismatch(
            f"{url}: sha256 is {got}, but params.yaml pins {sha256}. The download was deleted. "
            "If the publisher really changed the file, check it and update the pinned sha256."
        )
    os.replace(part, final)
    return final


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link when on one file system (no second copy of a large archive), else copy."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)

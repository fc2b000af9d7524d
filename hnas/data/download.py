"""Checksummed downloads and archive extraction that never leave a half-written file behind.

The archive is streamed into a temporary file next to its destination, its MD5 is checked, and only then
is it renamed into place; extraction goes to a temporary folder that is renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from hnas.data.errors import DataError, DownloadError

log = logging.getLogger(__name__)


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_url(url: str, dest: Path, md5: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying ``md5``; raise DownloadError on any failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        received = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            header = resp.headers.get("Content-Length")
            total = int(header) if header and header.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=None) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    h.update(block)
                    received += len(block)
                    bar.update(len(block))
        if total is not None and received != total:
            raise DownloadError(f"could not download {url}: connection closed after {received} of {total} "
                                "bytes")
        got = h.hexdigest()
        if got != md5:
            raise DownloadError(f"checksum mismatch for {url}: md5 {got}, expected {md5}; the file was "
                                "discarded")
        os.replace(tmp, dest)
        log.info("downloaded %s to %s", url, dest)
        return dest
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise DownloadError(f"could not download {url}: {getattr(e, 'reason', e)}") from e
    finally:
        tmp.unlink(missing_ok=True)


def extract_tar(archive: Path, dest_dir: Path, folder: str) -> Path:
    """Extract ``archive`` (which holds ``folder/``) into ``dest_dir``; returns ``dest_dir/folder``.

    Files already present in ``dest_dir/folder`` are kept; missing ones are added.
    """
    tmp = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{folder}.extract."))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"cannot extract {archive}: {e}") from e
        src = tmp / folder
        if not src.is_dir():
            raise DataError(f"{archive} does not contain the folder {folder}/")
        target = dest_dir / folder
        if not target.exists():
            os.replace(src, target)
        else:
            for item in src.rglob("*"):
                rel = item.relative_to(src)
                if item.is_file() and not (target / rel).exists():
                    (target / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(item, target / rel)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_extracted(root: Path, folder: str, files: Sequence[str], archive_name: str, url: str, md5: str,
                     download: bool, what: str) -> Path:
    """Make sure ``root/folder`` holds ``files``: use it, else extract ``root/archive_name`` (checked), else
    download ``url`` when ``download`` is true. Errors say where to put which files."""
    target = root / folder
    if all((target / f).is_file() for f in files):
        return target
    where = (f"put {archive_name} (md5 {md5}, from {url}) into {root}, or extract it there so that "
             f"{target}/ holds {', '.join(files)}")
    archive = root / archive_name
    if archive.is_file():
        got = md5sum(archive)
        if got != md5:
            raise DownloadError(f"{archive} has md5 {got}, expected {md5} (corrupt or wrong file); delete it "
                                f"and {where}" + ("" if download else ", or pass download=True"))
    elif download:
        root.mkdir(parents=True, exist_ok=True)
        try:
            download_url(url, archive, md5)
        except DownloadError as e:
            raise DownloadError(f"{e}. To install {what} by hand, {where}") from e
    else:
        raise DataError(f"{what} not found: {where}; or pass download=True to fetch it")
    extract_tar(archive, root, folder)
    missing = [f for f in files if not (target / f).is_file()]
    if missing:
        raise DataError(f"{archive} extracted to {target}, but it lacks {missing}; expected "
                        f"{', '.join(files)}")
    return target

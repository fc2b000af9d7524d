"""Errors of the data layer; messages name the bad value or path and what would be valid."""

from __future__ import annotations

from hnas.errors import HNASError


class DataError(HNASError, ValueError):
    """Bad data path, file layout, content or option."""


class DownloadError(DataError):
    """A download failed (offline, HTTP error) or its checksum did not match."""

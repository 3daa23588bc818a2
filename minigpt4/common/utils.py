"""Small helpers shared across the package."""

from __future__ import annotations

import os
import time
from urllib.parse import urlparse

from minigpt4.common.registry import registry

URL_SCHEMES = ("http", "https", "ftp", "s3", "gs", "hf")


def now() -> str:
    """A job id from the current local time to the second, e.g. ``20240131123059``."""
    return time.strftime("%Y%m%d%H%M%S")


def is_url(text: str | os.PathLike[str] | None) -> bool:
    """Whether ``text`` looks like a remote URL (``https://...``, ``s3://...``) rather than a local path."""
    if text is None:
        return False
    parsed = urlparse(os.fspath(text))
    return parsed.scheme in URL_SCHEMES and bool(parsed.netloc)


def get_abs_path(rel_path: str) -> str:
    """``rel_path`` relative to the ``minigpt4/`` package directory (``registry.get_path("library_root")``)."""
    return os.path.join(registry.get_path("library_root"), rel_path)


def get_repo_root() -> str:
    """The directory holding the ``minigpt4/`` package (the repository root in a source checkout)."""
    return os.path.dirname(registry.get_path("library_root"))

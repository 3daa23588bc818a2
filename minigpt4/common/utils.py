"""Small helpers shared across the package, and the "local files only" rule for checkpoints."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from urllib.parse import urlparse

from minigpt4.common.checkpoints import download_hint
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


def get_repo_root() -> str:
    """The directory holding the ``minigpt4/`` package (the repository root in a source checkout)."""
    return os.path.dirname(registry.get_path("library_root"))


# ----------------------------------------------------------------------------------------------------------
# local files only
# ----------------------------------------------------------------------------------------------------------


def resolve_local_file(path_or_url: str | os.PathLike[str] | None, what: str, search_dirs: Sequence[str] = ()) -> str:
    """An existing local file or folder for ``path_or_url``; minigpt4 never downloads.

    Relative paths are tried against the current directory, then against each of ``search_dirs``.

    Args:
        path_or_url: the configured value.
        what: the config key (``model.vit_path``) or a description of the file, quoted in errors.
        search_dirs: extra directories for relative paths.

    Raises:
        FileNotFoundError: for a URL, an empty value or a path that does not exist; the message names ``what``,
            each distinct place looked at and, for a published file name only
            (:func:`minigpt4.common.checkpoints.download_hint`), what to download from where.
    """
    text = os.fspath(path_or_url) if path_or_url is not None else ""
    hint = download_hint(text, what)
    if not text:
        raise FileNotFoundError(f"{what}: no path set" + (f". {hint}" if hint else ""))
    if is_url(text):
        raise FileNotFoundError(
            f"{what}: {text!r} is a URL, but minigpt4 never downloads files. "
            + (hint or f"Download it and set {what} to the local path")
        )
    path = os.path.expanduser(text)
    if os.path.exists(path):
        return path
    tried = [os.path.abspath(path)]
    if not os.path.isabs(path):
        for base in search_dirs:
            candidate = os.path.join(base, path)
            if os.path.exists(candidate):
                return candidate
            tried.append(os.path.abspath(candidate))
    tried = list(dict.fromkeys(tried))
    message = f"{what}: file not found: {text!r} (looked at {', '.join(tried)})"
    raise FileNotFoundError(message + (f". {hint}" if hint else ""))


def proc_status_mib(*fields: str) -> dict[str, float]:
    """The memory ``fields`` of ``/proc/self/status`` (``VmHWM``, ``RssAnon``, ...) in MiB; the fields it lacks,
    and every field where there is no /proc, are left out."""
    found: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in fields:
                    found[name] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return found


def peak_rss_mib() -> float | None:
    """This process's peak resident memory in MiB (``VmHWM``; the ``ru_maxrss`` of getrusage where there is no
    /proc), or None where neither is available."""
    peak = proc_status_mib("VmHWM").get("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
        import sys

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, KiB elsewhere
    except (ImportError, OSError):
        return None

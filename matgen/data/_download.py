"""Streaming download with a sha256 check and an atomic rename; the cache folder."""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from matgen._files import atomic_path

log = logging.getLogger("matgen.data")

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed (network error, HTTP error or checksum mismatch)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected sha256."""


def cache_dir() -> Path:
    """matgen's cache folder: ``MATGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/matgen``, else
    ``~/.cache/matgen``."""
    env = os.environ.get("MATGEN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "matgen"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download(
    url: str, dest: str | os.PathLike, sha256: str | None = None, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest``: stream into a temporary file beside it, check the sha256,
    then rename atomically (a crash never leaves a half-written ``dest``).

    Args:
        url: http(s) or file URL.
        dest: final path.
        sha256: expected hex digest; None accepts any content (the digest is logged and written
            next to the file as ``<dest>.sha256``).
        timeout: socket timeout in seconds.

    Returns:
        ``dest``.

    Raises:
        DownloadError: network or HTTP failure.
        ChecksumError: the content does not match ``sha256`` (nothing is kept).
    """
    dest = Path(dest)
    h = hashlib.sha256()
    size = 0
    with atomic_path(dest, suffix=".part") as tmp:
        req = urllib.request.Request(url, headers={"User-Agent": "matgen"})
        with open(tmp, "wb") as out:
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    while chunk := resp.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            except urllib.error.HTTPError as exc:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DownloadError(f"{url}: {reason}") from None
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise ChecksumError(
                f"{url}: sha256 mismatch (expected {sha256.lower()}, got {digest}); file not kept"
            )
    if sha256 is None:
        log.warning("downloaded %s without a pinned checksum (sha256 %s)", url, digest)
        dest.with_name(dest.name + ".sha256").write_text(digest + "\n")
    else:
        log.info("downloaded %s (%d bytes, sha256 ok)", url, size)
    return dest

"""Reading files as text without tracebacks: gzip, encodings, binary garbage, format sniffing."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

#: Recognised suffixes per format (lower case, ``.gz`` stripped first).
CSV_SUFFIXES = {".csv"}
CIF_SUFFIXES = {".cif", ".mcif"}
XYZ_SUFFIXES = {".extxyz", ".xyz"}


class FileProblem(Exception):
    """A whole file cannot be used; ``str(exc)`` is a one-line reason."""


def base_suffix(path: Path) -> str:
    """Lower-case suffix with a trailing ``.gz`` removed (``a.csv.gz`` -> ``.csv``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def read_text(path: Path) -> str:
    """Read a (possibly gzip-compressed) text file as a string.

    Gzip is detected by its magic bytes, not the name. UTF-8 (with or without BOM) and UTF-16
    with a BOM are accepted; anything else is a :class:`FileProblem` with a one-line reason.

    Raises:
        FileProblem: unreadable, empty, binary, bad gzip or undecodable content.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FileProblem(f"cannot read file: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileProblem(f"not a valid gzip file ({exc})") from None
    elif path.suffix.lower() == ".gz" and raw:
        raise FileProblem("named .gz but not gzip-compressed")
    if not raw.strip():
        raise FileProblem("empty file")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise FileProblem(f"invalid UTF-16 text at byte {exc.start}") from None
    else:
        head = raw[:65536]
        if b"\x00" in head:
            enc = _bomless_utf16(head)
            if enc is None:
                raise FileProblem("binary content (NUL bytes), not a text file")
            try:
                return _check_text(raw.decode(enc))
            except UnicodeDecodeError:
                raise FileProblem("binary content (NUL bytes), not a text file") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 1].hex()
            raise FileProblem(
                f"not UTF-8 text (byte 0x{bad} at offset {exc.start}); re-save it as UTF-8"
            ) from None
    return _check_text(text)


def _check_text(text: str) -> str:
    if "\x00" in text:
        raise FileProblem("binary content (NUL characters), not a text file")
    if not text.strip():
        raise FileProblem("empty file")
    return text


def _bomless_utf16(head: bytes) -> str | None:
    """``'utf-16-le'`` / ``'utf-16-be'`` when ASCII-range text was saved as UTF-16 without a
    byte-order mark (every other byte NUL), else None."""
    sample = head[: 2048 - len(head[:2048]) % 2]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) == len(odd) and even.count(0) == 0:
        return "utf-16-le"
    if even.count(0) == len(even) and odd.count(0) == 0:
        return "utf-16-be"
    return None


def sniff_format(path: Path, text: str) -> str | None:
    """Guess ``'csv'``, ``'cif'`` or ``'extxyz'`` from the name, else from the content."""
    suffix = base_suffix(path)
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in CIF_SUFFIXES:
        return "cif"
    if suffix in XYZ_SUFFIXES:
        return "extxyz"
    stripped = text.lstrip()
    first = stripped.split("\n", 1)[0].strip()
    if first.isdigit():
        return "extxyz"
    if "_cell_length_a" in text and ("\ndata_" in "\n" + text):
        return "cif"
    if "cif" in [c.strip().strip('"').lower() for c in first.split(",")]:
        return "csv"
    return None

"""What the generation metrics need to know of each crystal (validity, density, element
count, formula, fingerprints), computed in worker processes; the descriptions of a reference
set are cached on disk by the hash of its CIF texts, and shipped fingerprint tables spare the
slow CrystalNN fingerprints of the public datasets."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from matgen._files import atomic_path
from matgen.evaluation._io import parse_cif
from matgen.evaluation._parallel import parallel_map
from matgen.evaluation._validity import arrays_from_structure, build_structure, check_validity

if TYPE_CHECKING:  # pragma: no cover
    from matgen.evaluation._gen import GenConfig


def _describe(item: tuple) -> dict[str, Any]:
    """Worker: validity, density, element count, fingerprints of one crystal.

    ``item = (payload, payload_is_cif, with_fingerprints[, known (struct_fp, comp_fp)
    [, smact_rules]])``.
    """
    payload, is_cif, with_fp = item[:3]
    known = item[3] if len(item) > 3 else None
    rules = item[4] if len(item) > 4 else "cdvae"
    if is_cif:
        s = parse_cif(payload)
        v = check_validity(s, None, "unparsable_cif", smact_rules=rules)
    else:
        s, why = build_structure(payload)
        v = check_validity(s, payload[1], why, smact_rules=rules)
    out: dict[str, Any] = {
        "constructed": v.constructed,
        "comp_valid": v.comp_valid,
        "struct_valid": v.struct_valid,
        "valid": v.valid,
        "invalid_reason": v.reason,
        "density": None,
        "num_elements": None,
        "formula": None,
        "arrays": None,
        "struct_fp": None,
        "comp_fp": None,
    }
    if s is None:
        return out
    out["density"] = float(s.density)
    out["num_elements"] = len(set(s.species))
    out["formula"] = s.composition.reduced_formula
    if is_cif:
        out["arrays"] = arrays_from_structure(s)
    if with_fp and known is not None:
        out["struct_fp"], out["comp_fp"] = list(known[0]), list(known[1])
    elif with_fp:
        from matgen.evaluation._fingerprints import composition_fingerprint, structure_fingerprint

        sfp = structure_fingerprint(s)
        if sfp is None:
            out["valid"] = False
            if not out["invalid_reason"]:
                out["invalid_reason"] = "fingerprint_failed"
        else:
            out["struct_fp"] = sfp.tolist()
            out["comp_fp"] = composition_fingerprint(s.composition).tolist()
    return out


#: Folder of shipped fingerprint tables (``*.npz``: ``keys`` = sha1 of the CIF text,
#: ``struct_fp`` (n, 61), ``comp_fp`` (n, 132)), computed by this module from public datasets.
FINGERPRINT_TABLE_DIR = Path(__file__).resolve().parent / "_data"


def cif_key(cif: str) -> str:
    """Key of a CIF text in fingerprint tables (sha1 hex of its UTF-8 bytes)."""
    return hashlib.sha1(cif.encode()).hexdigest()


@cache
def _fingerprint_table() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    table: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for f in sorted(FINGERPRINT_TABLE_DIR.glob("*.npz")):
        try:
            z = np.load(f, allow_pickle=False)
            for k, s, c in zip(z["keys"], z["struct_fp"], z["comp_fp"], strict=True):
                table[str(k)] = (s, c)
        except Exception:  # noqa: BLE001, S112 - a broken table is ignored (recomputed)
            continue
    return table


def _cache_dir(cfg: GenConfig) -> Path | None:
    if cfg.cache_dir == "":
        return None
    from matgen.data import cache_dir

    return Path(cfg.cache_dir or cache_dir()) / "evaluation"


def _describe_references(
    cifs: Sequence[str], with_fp: bool, cfg: GenConfig, workers: int, progress: bool, desc: str
) -> list[dict[str, Any]]:
    """:func:`_describe` of reference CIFs, cached on disk by the hash of all CIF texts.

    The cache is gzipped JSON (data only: nothing read from the cache folder can run code;
    ``describe_*.pkl`` files of older versions are never opened).
    """
    d = _cache_dir(cfg)
    h = hashlib.sha256()
    for c in cifs:
        h.update(c.encode())
        h.update(b"\0")
    key = f"describe_{h.hexdigest()[:24]}_{int(with_fp)}_{cfg.smact_rules}.json.gz"
    if d is not None and (d / key).exists():
        cached = _read_describe_cache(d / key, len(cifs))
        if cached is not None:
            return cached
    table = _fingerprint_table() if with_fp else {}
    items = [(c, True, with_fp, table.get(cif_key(c)), cfg.smact_rules) for c in cifs]
    res = parallel_map(_describe, items, workers=workers, progress=progress, desc=desc)
    if d is not None:
        try:
            with atomic_path(d / key) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as f:
                json.dump(res, f, default=_plain)
        except OSError:
            pass
    return res


def _plain(obj: Any) -> Any:
    """numpy scalars and arrays as plain JSON values."""
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON data: {type(obj).__name__}")


_DESCRIBE_KEYS = frozenset(
    (
        "constructed",
        "comp_valid",
        "struct_valid",
        "valid",
        "invalid_reason",
        "density",
        "num_elements",
        "formula",
        "arrays",
        "struct_fp",
        "comp_fp",
    )
)


def _read_describe_cache(path: Path, n: int) -> list[dict[str, Any]] | None:
    """The cached descriptions, or None when the file is unreadable or not of their shape
    (then they are recomputed)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows = json.load(f)
    except (OSError, EOFError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(rows, list) or len(rows) != n:
        return None
    for r in rows:
        if not isinstance(r, dict) or set(r) != _DESCRIBE_KEYS:
            return None
        a = r["arrays"]
        if a is not None:
            if not (isinstance(a, list) and len(a) == 4):
                return None
            r["arrays"] = tuple(a)  # CrystalArrays
    return rows


# ----------------------------------------------------------------------------- metrics

"""A zip of CIF files beside an extxyz (as MatterGen writes): one ``<id>.cif`` per crystal
for tools that read CIF only (VESTA, CrystalMaker, a lab's database)."""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matgen._files import atomic_path

_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def write_cif_zip(path: str | os.PathLike, crystals: Iterable[tuple[str, Any, list[str]]],
                  symprec: float | None = 0.1) -> Path:
    """Write ``(id, structure, comment lines)`` triples as ``<id>.cif`` files in a zip.

    Each CIF is symmetrised with ``symprec`` when its symmetrised cell still matches the
    structure (else P1; ``None``: always P1), its data block is named by the id and the
    comment lines open it (``# ...``). Ids are made file-safe and unique (``_2``, ``_3``...).
    The zip is written atomically.
    """
    from matgen.campaign._export import symmetrised_cif

    p = Path(path)
    used: set[str] = set()
    with atomic_path(p) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for ident, structure, comments in crystals:
            base = _SAFE.sub("_", str(ident)) or "crystal"
            name, k = base, 1
            while name in used:
                k += 1
                name = f"{base}_{k}"
            used.add(name)
            if symprec is None:
                from pymatgen.io.cif import CifWriter

                body = str(CifWriter(structure))
                body = re.sub(r"^data_\S*", f"data_{name}", body, count=1, flags=re.MULTILINE)
                text = "".join(f"# {c}\n" for c in comments) + body
            else:
                text, _ = symmetrised_cif(structure, name, comments, symprec)
            zf.writestr(f"{name}.cif", text)
    return p

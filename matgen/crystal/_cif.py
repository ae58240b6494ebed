"""CIF: splitting a file into data blocks, parsing a block with pymatgen, writing CIF."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from matgen.crystal._batch import CrystalBatch
from matgen.crystal._entries import RawEntry, entry_name, file_error, one_line

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

_CIF_MESSAGES = {
    "Singular matrix": "zero cell volume (singular lattice)",
    "species property only supports ordered structures": "partial occupancies (disordered sites)",
}


_NONFINITE = re.compile(
    r"^(?!\s*#).*?(?<![\w.])([+-]?(?:nan|inf|infinity))(?![\w.])", re.IGNORECASE | re.MULTILINE
)


def nonfinite_field(text: str) -> str | None:
    """Name what holds a NaN/inf number in a CIF (cell or coordinates), else None."""
    for m in _NONFINITE.finditer(text):
        line = m.group(0).lstrip()
        if line.startswith("_cell_"):
            return "NaN or inf in the lattice (cell parameters)"
        if not line.startswith("_"):
            return "NaN or inf in the atomic coordinates"
    return None


def _bad_occupancy(parser) -> str | None:
    """pymatgen silently drops sites with occupancy <= 0; name them instead."""
    for block in parser.as_dict().values():
        occ = block.get("_atom_site_occupancy")
        if not occ:
            continue
        labels = block.get("_atom_site_label") or [""] * len(occ)
        for lab, v in zip(labels, occ):
            try:
                x = float(str(v).split("(")[0])
            except ValueError:
                continue  # '?' or '.': pymatgen treats it as 1
            if x <= 0:
                return f"site {lab} has occupancy {x:g} (<= 0)"
    return None


def structure_from_cif(text: str) -> Structure | str:
    """Parse one CIF data block with pymatgen; return a Structure or a one-line reason."""
    from pymatgen.io.cif import CifParser

    if "_atom_site_fract_x" not in text and "_atom_site_cartn_x" not in text.lower():
        if "_cell_length_a" not in text:
            return "CIF does not parse: no cell parameters and no atom sites"
        return "CIF has no atom sites (no _atom_site_fract_x loop)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser = CifParser.from_str(text, check_cif=False)
            bad_occ = _bad_occupancy(parser)
            if bad_occ is not None:
                return bad_occ
            structs = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as exc:  # noqa: BLE001 - pymatgen raises many types for bad CIFs
            msg = one_line(str(exc))
            nonfinite = nonfinite_field(text)
            if nonfinite is not None:
                return nonfinite
            if isinstance(exc, ZeroDivisionError):  # pymatgen divides by the site count
                return "CIF has no atom sites (empty _atom_site loop)"
            for key, nice in _CIF_MESSAGES.items():
                if key in msg:
                    return nice
            if "_atom_site_fract_x" in msg:
                return "CIF does not parse: no fractional coordinates (_atom_site_fract_x)"
            if "exceeded tolerance" in msg:  # two sites at one position, occupancies summed
                occ = msg.replace("No structure parsed for section 1 in CIF.; ", "").rstrip(".")
                return f"overlapping sites: {occ} (duplicate atoms at one position?)"
            if isinstance(exc, ZeroDivisionError | IndexError | KeyError):
                detail = "; ".join(one_line(str(w.message), 120) for w in caught[:1])
                msg = f"{type(exc).__name__}: {msg}" + (f" ({detail})" if detail else "")
            msg = msg.replace("No structure parsed for section 1 in CIF.; ", "")
            return f"CIF does not parse: {msg}"
    if not structs:
        detail = one_line(str(caught[0].message)) if caught else "no structure in the block"
        return f"CIF does not parse: {detail}"
    return structs[0]


def structure_to_arrays(s: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    from pymatgen.core.periodic_table import DummySpecies

    if not s.is_ordered:
        return "partial occupancies (disordered sites)"
    zs = []
    for site in s:
        sp = site.specie
        if isinstance(sp, DummySpecies):
            return f"unknown element '{sp.symbol}'"
        zs.append(sp.Z)
    return (np.asarray(zs, dtype=np.int64), np.asarray(s.frac_coords, float), s.lattice.matrix)


_DATA_RE = re.compile(r"^data_", re.MULTILINE)


def split_cif(text: str, label: str, stem: str) -> list[RawEntry]:
    starts = [m.start() for m in _DATA_RE.finditer(text)]
    if not starts:
        return [file_error(label, "not a CIF: no data_ block")]
    blocks = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    if len(blocks) == 1:
        return [RawEntry(label, stem, cif=blocks[0])]
    names = [b.split(None, 1)[0][len("data_") :] if b.split() else "" for b in blocks]
    raws = []
    for n, (b, nm) in enumerate(zip(blocks, names), start=1):
        ident = nm if nm and names.count(nm) == 1 else f"{stem}_{n}"
        raws.append(RawEntry(entry_name(label, "block", n, ident), ident, cif=b))
    return raws


_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def write_cif(
    path: str | os.PathLike,
    crystals: CrystalBatch | Sequence[Structure],
    ids: Sequence[str] | None = None,
) -> list[Path]:
    """Write crystals as CIF (pymatgen ``CifWriter``).

    Args:
        path: a ``.cif`` file (all crystals as data blocks named after their ids) or a folder
            (one ``<id>.cif`` per crystal).
        crystals: a batch or pymatgen structures.
        ids: names for structures (default: the batch ids, ``structure.properties
            ['material_id']`` or the index).

    Returns:
        The files written.
    """
    from pymatgen.io.cif import CifWriter

    if isinstance(crystals, CrystalBatch):
        structs = crystals.to_structures()
        names = list(ids) if ids is not None else list(crystals.ids)
    else:
        structs = list(crystals)
        names = (
            list(ids)
            if ids is not None
            else [str(s.properties.get("material_id", i)) for i, s in enumerate(structs)]
        )
    names = [_SAFE.sub("_", n) or f"crystal_{i}" for i, n in enumerate(names)]
    texts = []
    for s, n in zip(structs, names):
        s = s.copy()
        s.properties = {}
        body = str(CifWriter(s))
        lines = body.splitlines()
        idx = next((i for i, ln in enumerate(lines) if ln.startswith("data_")), None)
        if idx is not None:
            lines[idx] = f"data_{n}"
        texts.append("\n".join(lines) + "\n")
    p = Path(path)
    if p.suffix.lower() == ".cif":
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(texts))
        return [p]
    p.mkdir(parents=True, exist_ok=True)
    out = []
    for n, t in zip(names, texts):
        q = p / f"{n}.cif"
        q.write_text(t)
        out.append(q)
    return out

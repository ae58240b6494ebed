"""Writing generated crystals: a file that grows batch by batch (``OUT.partial``, renamed to
``OUT`` at the end), in the format the file name asks for.

* ``.extxyz`` / ``.xyz``: extended XYZ, one frame per crystal with its metadata in ``info``;
* ``.cif``: one CIF data block per crystal (named by its ``sample_id``), pymatgen-readable, the
  same metadata as ``#`` comment lines above each block.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from matgen.crystal import CrystalBatch

#: Output suffixes and their format.
FORMATS = {".extxyz": "extxyz", ".xyz": "extxyz", ".cif": "cif"}

_BLOCK_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def output_format(out: str | Path) -> str:
    """``extxyz`` or ``cif`` from the file name.

    Raises:
        ValueError: another suffix (one line naming the ones understood).
    """
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"--out {out}: unknown output format {suffix or '(no suffix)'!r}; "
                         "use .extxyz (or .xyz) or .cif")
    return FORMATS[suffix]


class PartialExtxyz:
    """``OUT.partial`` grows while batches finish (a crash keeps them); :meth:`finish` renames
    it to ``OUT``. A stale ``OUT.partial`` from an earlier run is removed first."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.out.with_name(self.out.name + ".partial")
        if self.partial.exists():
            self.partial.unlink()

    def append(self, crystals: CrystalBatch, info: dict[str, list], keep_id: list[bool]) -> None:
        """Append one batch's frames with :func:`matgen.crystal.write_extxyz` (the file is
        closed after, so finished batches are on disk). ``keep_id[i]`` false drops frame
        ``i``'s ``material_id`` (no source row: the ``sample_id`` identifies it)."""
        from matgen.crystal import write_extxyz

        atoms = crystals.to_atoms()
        for a, keep in zip(atoms, keep_id, strict=True):
            if not keep:
                a.info.pop("material_id", None)
        write_extxyz(self.partial, atoms, info=info, append=self.partial.exists())

    def finish(self) -> Path:
        os.replace(self.partial, self.out)
        return self.out


class PartialCif(PartialExtxyz):
    """The same growing file, as CIF data blocks: ``data_<sample_id>`` per crystal, with the
    sampling metadata (checkpoint, seed, sampler, conditions, ...) as ``#`` comments."""

    def append(self, crystals: CrystalBatch, info: dict[str, list], keep_id: list[bool]) -> None:
        from pymatgen.io.cif import CifWriter

        structs = crystals.to_structures()
        ids = list(crystals.ids)
        texts = []
        for i, s in enumerate(structs):
            meta = {k: v[i] for k, v in info.items()}
            if keep_id[i] and ids[i] and ids[i] != meta.get("sample_id"):
                meta.setdefault("material_id", ids[i])
            name = _BLOCK_SAFE.sub("_", str(meta.get("sample_id") or ids[i] or i))
            s = s.copy()
            s.properties = {}
            body = str(CifWriter(s))
            body = re.sub(r"^data_\S*", f"data_{name}", body, count=1, flags=re.MULTILINE)
            body = "\n".join(ln for ln in body.splitlines() if ln != "# generated using pymatgen")
            head = "".join(f"# {k} = {_one_line(v)}\n" for k, v in meta.items())
            texts.append(f"{head}{body}\n")
        with self.partial.open("a") as fh:
            fh.write("".join(texts))


def _one_line(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    return " ".join(str(v).split())


def open_writer(out: str | Path) -> PartialExtxyz:
    """The growing-file writer for ``out``'s format (see :func:`output_format`)."""
    return PartialCif(out) if output_format(out) == "cif" else PartialExtxyz(out)

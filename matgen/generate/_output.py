"""Writing generated crystals: an extxyz file that grows batch by batch, and per-frame info."""

from __future__ import annotations

import os
from pathlib import Path

from matgen.crystal import CrystalBatch


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

"""matgen.crystal: the batch contract, conversions, file io and validation of bad input."""

from __future__ import annotations

from matgen.crystal._batch import MAX_Z, CrystalBatch

__all__ = ["MAX_Z", "CrystalBatch"]

"""Chemical-system constraints as type masks."""

from __future__ import annotations

import re

import torch

from matgen.crystal import MAX_Z


def parse_chemsys(chemsys: str) -> list[int]:
    """``"Li-Fe-O"`` (also ``"Li,Fe,O"`` or ``"Li Fe O"``) -> sorted atomic numbers.

    Raises:
        ValueError: an unknown element or one beyond ``MAX_Z``, or an empty system.
    """
    from pymatgen.core.periodic_table import Element

    names = [x for x in re.split(r"[-,\s]+", chemsys.strip()) if x]
    if not names:
        raise ValueError(f"empty chemical system {chemsys!r}")
    zs = set()
    for name in names:
        try:
            z = Element(name).Z
        except ValueError:
            raise ValueError(f"unknown element {name!r} in chemical system {chemsys!r}") from None
        if z > MAX_Z:
            raise ValueError(f"element {name} (Z={z}) is beyond the modelled range Z <= {MAX_Z}")
        zs.add(z)
    return sorted(zs)


def chemsys_type_mask(chemsys: str, num_types: int = MAX_Z) -> torch.Tensor:
    """Allowed element classes of a chemical system, ``(K,)`` bool (class k is Z = k + 1).

    Pass it as ``type_mask`` to :func:`matgen.diffusion.sample` (or wrap a denoiser in
    :class:`TypeMaskedDenoiser`): every generated atom is then one of these elements.
    """
    mask = torch.zeros(num_types, dtype=torch.bool)
    for z in parse_chemsys(chemsys):
        mask[z - 1] = True
    return mask

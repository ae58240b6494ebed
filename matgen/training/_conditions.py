"""Property conditions of a training batch (raw labels, dropout for classifier-free guidance).

The sampling targets (``ConditionTarget``, ``parse_condition``) live in :mod:`matgen.generate`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from matgen.crystal import CrystalBatch


def training_conditions(
    batch: CrystalBatch,
    names: Sequence[str],
    drop_prob: float = 0.0,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor] | None:
    """The conditions of a training batch: ``{name: (B,)}`` raw labels, NaN = unconditioned.

    The denoiser normalises the values itself (its ``ConditionSpec`` mean / std). With
    ``drop_prob > 0`` all conditions of a crystal are dropped together with that probability
    (for a diffusion that does not drop conditions itself).

    Args:
        batch: the training batch (its ``properties`` hold the labels; NaN = missing).
        names: the condition names (CSV columns); a name that is not a column of the batch
            (a condition inherited from a fine-tuning checkpoint) is all NaN, i.e.
            unconditioned, on the batch's device.
        drop_prob: probability of dropping a crystal's conditions here.
        generator: generator for the drop mask (resumable, per rank); without one the mask is
            drawn on the batch's device from the global RNG (no host-to-device copy).
    """
    if not names:
        return None
    out = {}
    keep = None
    if drop_prob > 0:
        dev = generator.device if generator is not None else batch.lattice.device
        u = torch.rand(batch.num_crystals, generator=generator, device=dev)
        keep = (u >= drop_prob).to(batch.lattice.device)
    like = next(iter(batch.properties.values()), batch.lattice)
    for name in names:
        v = batch.properties.get(name)
        if v is None:
            dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
            v = torch.full((batch.num_crystals,), float("nan"), dtype=dtype,
                           device=batch.lattice.device)
        if keep is not None:
            v = torch.where(keep, v, torch.full_like(v, float("nan")))
        out[name] = v
    return out

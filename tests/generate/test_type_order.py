"""De novo type order: a step reveals as many masked atoms per crystal as the masking schedule
draws, random ones or the most confidently predicted ones (MaskGIT's order)."""

from __future__ import annotations

import pytest
import torch

from matgen.diffusion._processes import MaskedTypeProcess, _most_confident


def test_most_confident_keeps_each_crystals_count_and_takes_the_surest_masked_atoms():
    num_atoms = torch.tensor([3, 4, 2])
    masked = torch.tensor([1, 1, 0, 1, 1, 1, 1, 0, 1]).bool()
    reveal = torch.tensor([1, 0, 0, 0, 1, 1, 0, 0, 0]).bool()
    conf = torch.tensor([0.1, 0.9, 0.99, 0.5, 0.2, 0.8, 0.7, 0.9, 0.9])
    # crystal 0: one reveal, atom 2 is already revealed -> atom 1; crystal 1: two -> 5, 6;
    # crystal 2: none
    bidx = torch.repeat_interleave(torch.arange(3), num_atoms)
    assert _most_confident(reveal, masked, conf, bidx, num_atoms).tolist() == [
        False, True, False, False, False, True, True, False, False]


def _one_step(order_by_confidence: bool, seed: int = 0):
    """Half-way step (t = 1 -> 0.5) of 40 crystals of 1-12 atoms, atom i of a crystal sure of
    its type in proportion to i."""
    g = torch.Generator().manual_seed(seed)
    num_atoms = torch.randint(1, 13, (40,), generator=g)
    n = int(num_atoms.sum())
    pos = torch.cat([torch.arange(k) for k in num_atoms.tolist()]).float()
    logits = torch.stack([pos, torch.zeros(n), torch.zeros(n)], -1)  # class 0 surer for later i
    z = MaskedTypeProcess().step(torch.zeros(n, dtype=torch.long), logits, torch.ones(n),
                                 torch.full((n,), 0.5), torch.Generator().manual_seed(1),
                                 crystals=(torch.repeat_interleave(torch.arange(40), num_atoms),
                                           num_atoms) if order_by_confidence else None)
    return z, num_atoms, pos


def test_confidence_order_reveals_the_same_number_per_crystal_with_the_same_draws():
    zr, num_atoms, pos = _one_step(False)
    zc, _, _ = _one_step(True)
    bidx = torch.repeat_interleave(torch.arange(len(num_atoms)), num_atoms)
    per = lambda z: torch.bincount(bidx, (z > 0).float(), len(num_atoms))
    assert torch.equal(per(zr), per(zc)) and 0 < int((zc > 0).sum()) < len(zc)
    # the revealed atoms are the surest ones (higher position), random ones are not
    assert pos[zc > 0].mean() > pos[zr > 0].mean() + 1.0
    # and where a draw is kept, it is the same draw (only the positions differ)
    both = (zc > 0) & (zr > 0)
    assert torch.equal(zc[both], zr[both])


def test_sample_option_sets_records_and_checks_the_order(tmp_path, runs):
    from ase.io import read

    from matgen.generate import SampleInputError, generate

    ck = runs[0].checkpoint
    types = {}
    for order in (None, "confidence"):
        out = tmp_path / f"{order}.extxyz"
        generate(out, ck, 6, steps=4, seed=3, type_order=order, progress=False, log=None)
        frames = read(out, index=":")
        assert {f.info.get("type_order") for f in frames} == {order}  # absent for random
        types[order] = [tuple(f.get_atomic_numbers()) for f in frames]
    assert types["confidence"] != types[None]
    with pytest.raises(SampleInputError, match="--type-order"):
        generate(tmp_path / "x.extxyz", ck, 1, type_order="greedy", progress=False, log=None)


@pytest.mark.parametrize(("t", "s"), [(0.8, 0.6), (0.3, 0.2), (0.05, 0.0)])
def test_remasking_keeps_the_training_share_of_masked_atoms(t, s):
    """From a share ``t`` of masked atoms, a step to ``s`` leaves a share ``s`` masked with or
    without remasking; with it, atoms revealed before are masked again (never at the end)."""
    n, g = 200_000, torch.Generator().manual_seed(0)
    z0 = torch.randint(1, 4, (n,), generator=g)
    zt = torch.where(torch.rand(n, generator=g) < t, torch.zeros_like(z0), z0)
    logits = torch.zeros(n, 3)
    tt, ss = torch.full((n,), t), torch.full((n,), s)
    for eta in (0.0, 0.5, 5.0):
        z = MaskedTypeProcess().step(zt, logits, tt, ss, torch.Generator().manual_seed(1),
                                     remask=eta)
        assert abs(float((z == 0).float().mean()) - s) < 0.005, (eta, t, s)
        again = int(((zt > 0) & (z == 0)).sum())
        assert (again == 0) if (eta == 0 or s == 0) else again > 0.5 * n * (1 - t) * min(
            eta * (t - s), s / (1 - t))
        assert torch.equal(z[(zt > 0) & (z > 0)], zt[(zt > 0) & (z > 0)])  # kept types kept


def test_remask_option_is_recorded_and_checked(tmp_path, runs):
    from ase.io import read

    from matgen.generate import SampleInputError, generate

    ck = runs[0].checkpoint
    out = tmp_path / "r.extxyz"
    generate(out, ck, 4, steps=4, seed=3, type_remask=2.0, progress=False, log=None)
    assert {f.info.get("type_remask") for f in read(out, index=":")} == {2.0}
    generate(tmp_path / "n.extxyz", ck, 4, steps=4, seed=3, progress=False, log=None)
    assert "type_remask" not in read(tmp_path / "n.extxyz", index=0).info
    for bad in (-0.5, float("nan")):
        with pytest.raises(SampleInputError, match="--type-remask"):
            generate(tmp_path / "x.extxyz", ck, 1, type_remask=bad, progress=False, log=None)

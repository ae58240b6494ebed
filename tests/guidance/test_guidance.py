"""Classifier-free guidance wrapper and chemical-system masks."""

from __future__ import annotations

import pytest
import torch

from matgen.diffusion import DatasetStats, DiffusionConfig, build_diffusion, sample
from matgen.guidance import (
    TypeMaskedDenoiser,
    chemsys_type_mask,
    classifier_free_guidance,
    parse_chemsys,
)
from matgen.models import ConditionSpec, DenoiserConfig, build_denoiser
from matgen.testing import random_crystals

TINY = DenoiserConfig(
    hidden=16,
    vectors=4,
    layers=1,
    num_radial=8,
    angular_channels=4,
    cutoff=4.0,
    conditions=[ConditionSpec(name="band_gap", std=1.0)],
)


def _model():
    torch.manual_seed(0)
    m = build_denoiser(TINY).double()
    with torch.no_grad():
        for p in m.cond.parameters():
            p.normal_(0, 0.5)
    return m


def test_cfg_wrapper_is_linear_extrapolation():
    m = _model()
    batch = random_crystals([2, 3], torch.Generator().manual_seed(0))
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    cond = {"band_gap": torch.tensor([1.0, 2.5], dtype=torch.float64)}
    oc = m(batch, t, cond)
    ou = m(batch, t, {"band_gap": torch.full((2,), float("nan"), dtype=torch.float64)})
    og = classifier_free_guidance(m, 3.0)(batch, t, cond)
    assert torch.allclose(og.coord, ou.coord + 3 * (oc.coord - ou.coord))
    assert torch.allclose(og.lattice, ou.lattice + 3 * (oc.lattice - ou.lattice))
    one = classifier_free_guidance(m, 1.0)(batch, t, cond)
    assert torch.equal(one.coord, oc.coord)
    none = classifier_free_guidance(m, 3.0)(batch, t, None)
    assert torch.equal(none.coord, m(batch, t, None).coord)
    assert len(list(classifier_free_guidance(m, 2.0).parameters())) > 0


def test_chemsys_mask():
    mask = chemsys_type_mask("Li-Fe-O")
    assert mask.shape == (94,) and mask.sum() == 3
    assert mask[[2, 25, 7]].all()  # classes of Z = 3, 26, 8
    assert parse_chemsys(" O,Li  Fe ") == [3, 8, 26]
    with pytest.raises(ValueError, match="Xx"):
        parse_chemsys("Li-Xx")
    with pytest.raises(ValueError):
        parse_chemsys(" - ")


def test_sampling_respects_chemsys_always():
    m = _model().float()
    diff = build_diffusion(DiffusionConfig(), DatasetStats(mean_volume_per_atom=15.0))
    mask = chemsys_type_mask("Li-Fe-O")
    na = torch.tensor([1, 3, 8, 20])
    g = torch.Generator().manual_seed(0)
    out = sample(m, diff, na, None, steps=6, corrector_steps=0, generator=g, type_mask=mask)
    assert set(out.atomic_numbers.tolist()) <= {3, 26, 8}
    wrapped = TypeMaskedDenoiser(m, mask)
    out = sample(wrapped, diff, na, None, steps=6, corrector_steps=0, generator=g)
    assert set(out.atomic_numbers.tolist()) <= {3, 26, 8}
    logits = wrapped(random_crystals([2], g, dtype=torch.float32), torch.tensor([0.5])).type_logits
    assert torch.isinf(logits[:, ~mask]).all() and torch.isfinite(logits[:, mask]).all()

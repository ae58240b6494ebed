"""Checkpoints round-trip weights, configs, stats and metadata."""

from __future__ import annotations

import json

import pytest
import torch

from matgen.diffusion import DatasetStats, DiffusionConfig
from matgen.models import (
    ConditionSpec,
    DenoiserConfig,
    build_denoiser,
    load_checkpoint,
    load_pretrained_weights,
    save_checkpoint,
)
from matgen.testing import random_crystals

TINY = DenoiserConfig(hidden=16, vectors=4, layers=1, num_radial=8, angular_channels=4, cutoff=4.0)


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_denoiser(TINY)
    stats = DatasetStats(mean_volume_per_atom=17.5, num_atoms_counts={4: 10, 8: 3})
    dcfg = DiffusionConfig(sigma_max=0.4)
    path = save_checkpoint(tmp_path / "ck", model, {"diffusion": dcfg, "stats": stats, "step": 7})
    assert path.name == "model.safetensors" and (tmp_path / "ck" / "model.json").exists()
    assert json.loads((tmp_path / "ck" / "model.json").read_text())["metadata"]["step"] == 7
    for where in (tmp_path / "ck", path):
        loaded, meta = load_checkpoint(where)
        assert loaded.cfg == TINY and not loaded.training
        assert meta["diffusion"] == dcfg and meta["stats"] == stats and meta["step"] == 7
        batch = random_crystals([2, 3], torch.Generator().manual_seed(0), dtype=torch.float32)
        t = torch.tensor([0.2, 0.7])
        a, b = model(batch, t), loaded(batch, t)
        assert torch.equal(a.coord, b.coord) and torch.equal(a.lattice, b.lattice)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing")


def test_half_precision_storage(tmp_path):
    """float16 storage halves the file, loads back into a float32 model with every weight
    within half-precision rounding, and says so in model.json."""
    torch.manual_seed(0)
    model = build_denoiser(TINY)
    full = save_checkpoint(tmp_path / "fp32", model, {"step": 1})
    half = save_checkpoint(tmp_path / "fp16", model, {"step": 1}, storage_dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert json.loads((tmp_path / "fp16" / "model.json").read_text())["storage_dtype"] == "float16"
    loaded, _ = load_checkpoint(tmp_path / "fp16")
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert b.dtype == a.dtype, k
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), k
    assert not torch.equal(model.state_dict()["embed.weight"], loaded.state_dict()["embed.weight"])


def test_pretrained_weights_into_model_with_new_condition(tmp_path):
    torch.manual_seed(0)
    base = build_denoiser(TINY)
    save_checkpoint(tmp_path, base, {})
    cfg = TINY.model_copy(update={"conditions": [ConditionSpec(name="bulk_modulus", std=50.0)]})
    new = build_denoiser(cfg)
    missing = load_pretrained_weights(new, tmp_path)
    assert missing and all(k.startswith("cond.") for k in missing)
    batch = random_crystals([3], torch.Generator().manual_seed(1), dtype=torch.float32)
    t = torch.tensor([0.4])
    out = new(batch, t, {"bulk_modulus": torch.tensor([120.0])})
    ref = base(batch, t)
    assert torch.allclose(out.coord, ref.coord) and torch.allclose(out.lattice, ref.lattice)


def test_stats_sample_num_atoms():
    stats = DatasetStats(mean_volume_per_atom=10.0, num_atoms_counts={2: 1, 6: 3})
    n = stats.sample_num_atoms(4000, torch.Generator().manual_seed(0))
    assert set(n.unique().tolist()) == {2, 6}
    assert abs(float((n == 6).float().mean()) - 0.75) < 0.03
    batch = random_crystals([2, 6, 6], torch.Generator().manual_seed(0))
    s = DatasetStats.from_batch(batch)
    assert s.num_atoms_counts == {2: 1, 6: 2}
    assert abs(s.mean_volume_per_atom - 15.0) < 1e-6

"""Closed-form 3x3 algebra agrees with torch.linalg."""

from __future__ import annotations

import torch

from matgen.nn import det3, inv3, polar_rotation
from matgen.testing import random_rotation


def test_det_inv_polar_match_linalg():
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(500, 3, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(det3(lat), torch.linalg.det(lat), atol=1e-12)
    assert torch.allclose(inv3(lat), torch.linalg.inv(lat), rtol=1e-9, atol=1e-9)
    u, _, vh = torch.linalg.svd(lat)
    q = polar_rotation(lat)
    assert torch.allclose(q, u @ vh, atol=1e-10)
    assert torch.allclose(
        q @ q.transpose(1, 2), torch.eye(3, dtype=lat.dtype).expand(500, 3, 3), atol=1e-10
    )
    r = random_rotation(g)
    assert torch.allclose(polar_rotation(lat @ r.T), q @ r.T, atol=1e-10)
    # L = S Q with S symmetric positive definite
    s = lat @ q.transpose(1, 2)
    assert torch.allclose(s, s.transpose(1, 2), atol=1e-10)
    assert (torch.linalg.eigvalsh(s) > 0).all()

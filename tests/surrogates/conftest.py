"""Fixtures of the surrogates tests: one CHGNet (CPU) per session, tiny structures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def chgnet():
    from matgen.surrogates import CHGNetMLIP

    return CHGNetMLIP(device="cpu")


@pytest.fixture
def perturbed_pair(rock_salt, diamond_si):
    """Rock salt and diamond Si, rattled and strained a little (reproducibly)."""
    import numpy as np
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(0)
    out = []
    for s in (rock_salt, diamond_si):
        lat = s.lattice.matrix @ (np.eye(3) + np.diag([0.03, -0.02, 0.01]))
        cart = s.frac_coords @ lat + rng.normal(0, 0.05, (len(s), 3))
        out.append(Structure(Lattice(lat), s.species, cart, coords_are_cartesian=True))
    return out

"""Small builders shared by the evaluation tests (as fixtures returning functions)."""

from __future__ import annotations

import numpy as np
import pytest

from matgen.evaluation import GeneratedSet, ReferenceSet, generated_from_structures
from matgen.evaluation import reference_from_structures as _ref


def perturb(structure, pos_sigma: float, strain_sigma: float, rng: np.random.Generator):
    """Copy with Gaussian noise on Cartesian positions (Å) and a random lattice strain."""
    from pymatgen.core import Lattice, Structure

    strain = np.eye(3) + rng.normal(0.0, strain_sigma, (3, 3))
    lat = structure.lattice.matrix @ strain
    frac = structure.frac_coords + rng.normal(0.0, pos_sigma, (len(structure), 3)) @ np.linalg.inv(
        lat
    )
    return Structure(Lattice(lat), structure.species, frac)


def reference(structures, ids=None) -> ReferenceSet:
    return _ref(
        structures, ids=ids if ids is not None else [f"r{i}" for i in range(len(structures))]
    )


def generated(structures, ids) -> GeneratedSet:
    return generated_from_structures(structures, ids)


@pytest.fixture
def perturbed():
    return perturb


@pytest.fixture
def mkref():
    return reference


@pytest.fixture
def mkgen():
    return generated

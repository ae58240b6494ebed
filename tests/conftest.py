"""Shared tiny fixtures: rock salt, diamond Si, a triclinic cell, a one-atom cell."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("MATGEN_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The shared datasets folder (MATGEN_DATA_DIR, else ../shared/datasets)."""
    return Path(os.environ.get("MATGEN_DATA_DIR", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    d = data_dir()
    if not (d / "mp20_reduced" / "train.csv").exists():
        pytest.skip(f"shared datasets not found at {d}")
    return d


def _rock_salt():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _diamond_si():
    from pymatgen.core import Lattice, Structure

    return Structure(
        Lattice([[0, 2.7155, 2.7155], [2.7155, 0, 2.7155], [2.7155, 2.7155, 0]]),
        ["Si", "Si"],
        [[0, 0, 0], [0.25, 0.25, 0.25]],
    )


def _triclinic():
    from pymatgen.core import Lattice, Structure

    return Structure(
        Lattice.from_parameters(4.1, 5.3, 6.2, 78.0, 95.0, 104.0),
        ["Li", "Fe", "O", "O"],
        [[0.1, 0.2, 0.3], [0.55, 0.45, 0.6], [0.8, 0.15, 0.05], [0.3, 0.7, 0.85]],
    )


def _one_atom():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])


@pytest.fixture
def rock_salt():
    return _rock_salt()


@pytest.fixture
def diamond_si():
    return _diamond_si()


@pytest.fixture
def triclinic():
    return _triclinic()


@pytest.fixture
def one_atom():
    return _one_atom()


@pytest.fixture
def tiny_structures():
    """Four structures: rock salt (8 atoms), diamond Si (2), triclinic (4), bcc Fe (1)."""
    return [_rock_salt(), _diamond_si(), _triclinic(), _one_atom()]

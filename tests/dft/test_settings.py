"""matgen.dft without GPAW: settings, cache keys, result records, the convergence-test link."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from matgen.dft import (
    CONVERGED_ECUT_EV,
    CONVERGED_KPT_DENSITY,
    DFTResult,
    DFTSettings,
    structure_key,
)

REPO = Path(__file__).resolve().parents[2]
VERSIONS = {"gpaw": "x", "gpaw-data": "y", "ase": "z"}


def _rock_salt():
    from ase.build import bulk

    return bulk("NaCl", "rocksalt", a=5.64)


def test_defaults_are_the_convergence_tests_choice():
    path = REPO / "benchmarks" / "results" / "dft_convergence.json"
    if not path.exists():
        pytest.skip("benchmarks/results/dft_convergence.json not recorded yet")
    chosen = json.loads(path.read_text())
    if "chosen_kpt_density" not in chosen:
        pytest.skip("the convergence test has not finished")
    assert chosen["chosen_ecut_ev"] == CONVERGED_ECUT_EV == DFTSettings().ecut_ev
    assert chosen["chosen_kpt_density"] == CONVERGED_KPT_DENSITY == DFTSettings().kpt_density


def test_digest_follows_physics_not_time_limits():
    s = DFTSettings()
    assert s.digest() == s.replace(time_limit_s=5.0, threads=2).digest()
    assert s.digest() != s.replace(ecut_ev=s.ecut_ev + 50).digest()
    assert s.replace(ecut_ev=400).digest() == s.replace(ecut_ev=400.0).digest()
    assert s.magmom_of("Fe") > 0 and s.magmom_of("Al") == 0.0


def test_key_ignores_wrapping_and_sees_displacements():
    a = _rock_salt()
    s = DFTSettings()
    k = structure_key(a, s, VERSIONS)
    b = a.copy()
    b.positions += a.cell.array[0]  # a lattice translation: same crystal
    assert structure_key(b, s, VERSIONS) == k
    c = a.copy()
    c.positions[1] += np.array([0.01, 0.0, 0.0])
    assert structure_key(c, s, VERSIONS) != k
    assert structure_key(a, s, VERSIONS | {"gpaw": "other"}) != k


def test_result_round_trip_and_failure_has_no_number():
    r = DFTResult(key="k", status="scf_not_converged", formula="NaCl", natoms=2, message="m")
    assert not r.ok and r.energy_ev is None and r.relaxed_atoms() is None
    back = DFTResult.from_dict(json.loads(json.dumps(r.to_dict())), from_cache=True)
    assert back.from_cache and back.status == r.status and back.energy_ev is None


def test_reference_structures_fall_back_to_ase(tmp_path):
    from matgen.dft import ReferenceStructures

    ref = ReferenceStructures(tmp_path).get("Cu")  # no data there: ASE's fcc Cu
    assert ref.source == "ase:bulk fcc" and len(ref.atoms) == 1

"""S.U.N. with a stand-in scorer, and the conditional hit rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from matgen.evaluation import (
    STABILITY_NOTE,
    compare_to_base_rate,
    evaluate_sun,
    hit_rate,
    hit_rate_from_predictor,
    relaxation_rmsd,
)


def test_relaxation_rmsd(rock_salt):
    moved = rock_salt.copy()
    moved.translate_sites([0], [0.1 / 5.64, 0, 0], frac_coords=True)
    # one of 8 atoms moved by 0.1 Å, minus the mean shift
    d = np.zeros((8, 3))
    d[0, 0] = 0.1
    d -= d.mean(axis=0)
    assert relaxation_rmsd(rock_salt, moved) == pytest.approx(np.sqrt((d**2).sum(1).mean()))
    # a rigid translation is not a displacement
    shifted = rock_salt.copy()
    shifted.translate_sites(list(range(8)), [0.3, 0.1, 0.0])
    assert relaxation_rmsd(rock_salt, shifted) == pytest.approx(0.0, abs=1e-9)
    assert relaxation_rmsd(rock_salt, None) is None


def test_sun_with_stand_in_scorer(rock_salt, diamond_si, triclinic, mkgen, mkref):
    cscl = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    bad = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    gen = [rock_salt, rock_salt.copy(), cscl, diamond_si, triclinic, bad]
    # stand-in scorer: "relaxes" to the same structure; e_above_hull by formula / volume
    table = {"NaCl": 0.0, "Si": 0.05, "LiFeO2": 0.3}

    def scorer(structures):
        out = []
        for s in structures:
            e = table[s.composition.reduced_formula]
            if len(s) == 2 and s.composition.reduced_formula == "NaCl":  # CsCl-type NaCl
                e = -0.01
            out.append((s.copy(), e))
        return out

    res = evaluate_sun(mkgen(gen, None), scorer, train=mkref([rock_salt]), progress=False)
    m = res.metrics
    assert m["stability_judged_by"] == STABILITY_NOTE and "MLIP" in STABILITY_NOTE
    assert m["num_generated"] == 6 and m["num_valid"] == 5 and m["num_relaxed"] == 5
    # stable <= 0.1: NaCl, NaCl copy, cscl, Si ; <= 0.0: NaCl, copy, cscl
    assert m["num_stable@0.1"] == 4 and m["num_stable@0"] == 3
    # unique: rock salt (copy is a duplicate), cscl, Si, LiFeO2 ; novel: all but rock salt
    # S.U.N. @0.1: cscl, Si ; @0.0: cscl
    assert m["num_sun@0.1"] == 2 and m["num_sun@0"] == 1
    assert m["sun_rate@0.1"] == pytest.approx(2 / 6)
    assert m["rmsd_generated_vs_relaxed_mean_angstrom"] == pytest.approx(0.0, abs=1e-9)
    rows = res.per_structure
    assert rows[5]["valid"] is False and rows[5]["sun@0.1"] is False
    assert rows[2]["sun@0"] is True and rows[1]["unique"] is False


def test_sun_scorer_failures_are_not_stable(rock_salt, mkgen):
    def scorer(structures):
        return [(None, math.nan) for _ in structures]

    m = evaluate_sun(mkgen([rock_salt], None), scorer, progress=False).metrics
    assert m["num_relaxed"] == 0 and m["stable_rate@0.1"] == 0.0 and m["novelty_judged"] is False


def test_hit_rate_hand_computed():
    vals = [0.5, 1.5, 2.5, np.nan, 1.0, 2.0]
    valid = [True, True, True, True, False, True]
    h = hit_rate(vals, (1.0, 2.0), valid)
    # valid and inside [1, 2]: 1.5, 2.0 ; the NaN is a miss ; 1.0 is invalid
    assert (h.hits, h.num_valid, h.num_total) == (2, 5, 6)
    assert h.rate == pytest.approx(0.4) and h.rate_of_all == pytest.approx(2 / 6)
    assert hit_rate(vals, (None, 1.0)).hits == 2
    with pytest.raises(ValueError):
        hit_rate(vals, (2.0, 1.0))


def test_hit_rate_from_predictor_and_base_rate(tiny_structures):
    def predictor(structures):  # an independent "property": volume per atom
        return [s.volume / len(s) for s in structures]

    structs = [*tiny_structures, None]
    h = hit_rate_from_predictor(structs, predictor, (10.0, 30.0))
    expected = sum(10 <= s.volume / len(s) <= 30 for s in tiny_structures)
    assert h.hits == expected and h.num_valid == 4 and h.num_total == 5
    cond = hit_rate([1.0] * 40 + [5.0] * 10, (0.0, 2.0))
    base = hit_rate([1.0] * 10 + [5.0] * 40, (0.0, 2.0))
    cmp = compare_to_base_rate(cond, base)
    assert cmp["rate"] == pytest.approx(0.8) and cmp["base_rate"] == pytest.approx(0.2)
    assert cmp["enrichment"] == pytest.approx(4.0)
    assert cmp["p_value"] < 1e-6
    same = compare_to_base_rate(base, base)
    assert same["p_value"] > 0.4


def test_mlip_scorer_puts_energies_on_the_mp_scale_before_the_hull(monkeypatch):
    """An MLIP trained on raw MPtrj energies (SevenNet-0) is MP2020-corrected before the hull,
    as in matgen score; CHGNet-like MLIPs are used as they are."""
    from types import SimpleNamespace

    from pymatgen.core import Lattice, Structure

    import matgen.surrogates as sur
    import matgen.surrogates._score as score_mod
    from matgen.evaluation import mlip_scorer

    s = Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    seen = {}

    class Hull:
        name = "fake"

        def e_above_hull(self, comp, e):
            seen["e"] = e
            return e

    for correction, shift in ((None, 0.0), ("mp2020", -0.7)):
        fake = SimpleNamespace(energy_correction=correction)
        monkeypatch.setattr(sur, "load_mlip", lambda name, device=None, fake=fake: fake)
        monkeypatch.setattr(sur, "relax", lambda structs, m, cfg: [
            SimpleNamespace(energy_per_atom=-5.0, error=None, structure=x) for x in structs])
        monkeypatch.setattr(score_mod, "mp_compatible_energies",
                            lambda m, structs, e, shift=shift: [
                                x + (shift if m.energy_correction else 0.0) for x in e])
        scorer, _ = mlip_scorer("whatever", hull=Hull())
        (_, ehull), = scorer([s])
        assert ehull == -5.0 + shift and seen["e"] == -5.0 + shift

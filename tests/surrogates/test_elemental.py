"""MLIP-consistent elemental references: CHGNet-relaxed ground states sit on the MP hull."""

from __future__ import annotations

import json
import math

import pytest

from matgen.surrogates import (
    ConvexHull,
    RelaxConfig,
    load_elemental_energies,
    relax,
    relaxed_structures,
    score_structures,
    write_relaxed_extxyz,
    write_score_csv,
)
from matgen.surrogates._elemental import mlip_elemental_asset


def _ground_states():
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    to = AseAtomsAdaptor.get_structure
    return {
        "Si": to(bulk("Si", "diamond", a=5.43)),
        "Fe": to(bulk("Fe", "bcc", a=2.85)),
        "Cu": to(bulk("Cu", "fcc", a=3.62)),
        "NaCl": to(bulk("NaCl", "rocksalt", a=5.64)),
    }


@pytest.fixture(scope="module")
def relaxed_energies(chgnet):
    gs = _ground_states()
    res = relax(list(gs.values()), chgnet, RelaxConfig(fmax=0.05), ids=list(gs))
    assert all(r.error is None for r in res)
    return {k: (s.composition, r.energy_per_atom) for (k, s), r in zip(gs.items(), res,
                                                                      strict=True)}


def test_shipped_chgnet_table_covers_the_mp_elements_and_names_its_source():
    doc = json.loads(mlip_elemental_asset("chgnet").read_text())
    assert doc["mlip"].startswith("chgnet ")
    mu = load_elemental_energies("chgnet")
    assert len(mu) == 89 and all(math.isfinite(v) for v in mu.values())
    assert doc["sources"]["He"].startswith("mp (")  # noble gases keep MP's value
    assert not doc["sources"]["Si"].startswith("mp (")
    with pytest.raises(ValueError, match="no elemental reference table"):
        load_elemental_energies("no-such-mlip")


@pytest.mark.parametrize("elemental", ["chgnet-elements", "chgnet"])
def test_chgnet_ground_states_on_the_hull(relaxed_energies, datasets_dir, tmp_path, elemental):
    h = ConvexHull.from_mp(datasets_dir, cache_dir=tmp_path, elemental=elemental)
    for k in ("Si", "Fe", "Cu"):
        comp, e = relaxed_energies[k]
        assert abs(h.e_above_hull(comp, e)) < 0.03, k
    comp, e = relaxed_energies["NaCl"]
    assert abs(h.e_above_hull(comp, e)) < 0.1


def test_default_hull_differs_from_mp_only_for_elements(relaxed_energies, datasets_dir,
                                                         tmp_path):
    default = ConvexHull.from_mp(datasets_dir, cache_dir=tmp_path)
    mp = ConvexHull.from_mp(datasets_dir, cache_dir=tmp_path, elemental="mp")
    comp, e = relaxed_energies["NaCl"]
    assert default.e_above_hull(comp, e) == pytest.approx(mp.e_above_hull(comp, e), abs=1e-9)
    comp, e = relaxed_energies["Si"]
    assert default.e_above_hull(comp, e) < mp.e_above_hull(comp, e) - 0.08


def test_mp_elemental_option_keeps_the_legacy_offset(relaxed_energies, datasets_dir, tmp_path):
    h = ConvexHull.from_mp(datasets_dir, cache_dir=tmp_path, elemental="mp")
    comp, e = relaxed_energies["Si"]
    assert h.e_above_hull(comp, e) > 0.08  # the bug the CHGNet table fixes
    custom = ConvexHull.from_mp(datasets_dir, cache_dir=tmp_path, elemental={"Si": e})
    assert custom.e_above_hull(comp, e) == pytest.approx(0.0, abs=1e-9)


def test_score_rows_carry_relaxed_structures(chgnet, perturbed_pair, tmp_path):
    from ase.io import read

    rows = score_structures(perturbed_pair, ["nacl", "si"], mlip=chgnet, predictors=[],
                            config=None)
    structs = relaxed_structures(rows)
    for row, s, s0 in zip(rows, structs, perturbed_pair, strict=True):
        assert row["relaxed_cif"] and s is not None
        assert s.composition.reduced_formula == s0.composition.reduced_formula
        assert s.volume != pytest.approx(s0.volume, rel=1e-4)  # relaxed, not the input
    si = rows[1]
    assert abs(si["e_above_hull"]) < 0.03  # CHGNet elemental references by default
    csv = write_score_csv(tmp_path / "s.csv", rows).read_text()
    assert "relaxed_cif" not in csv and len(csv.splitlines()) == 3
    assert "relaxed_cif" in write_score_csv(tmp_path / "t.csv", rows, structures=True
                                            ).read_text().splitlines()[0]
    frames = read(write_relaxed_extxyz(tmp_path / "r.extxyz", rows), index=":")
    assert [f.info["sample_id"] for f in frames] == ["nacl", "si"]
    assert frames[1].info["e_above_hull"] == pytest.approx(si["e_above_hull"], abs=1e-6)
    assert frames[0].get_volume() == pytest.approx(structs[0].volume, rel=1e-6)

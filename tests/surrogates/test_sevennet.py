"""SevenNet as the second MLIP: batched forward = its ASE calculator, relaxation, MP2020
corrections, the MLIP names of its two checkpoints (``sevennet``: SevenNet-l3i5, the default;
``sevennet-0``), and ``matgen score --mlip sevennet-0``; the suspect flag of score rows."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

pytest.importorskip("sevenn")


@pytest.fixture(scope="module")
def sevennet():
    from matgen.surrogates import SevenNetMLIP

    return SevenNetMLIP(model="7net-0", device="cpu")  # the fast one: same code path as l3i5


def _reference(calc, s):
    from pymatgen.io.ase import AseAtomsAdaptor

    a = AseAtomsAdaptor.get_atoms(s)
    a.calc = calc
    return a.get_potential_energy() / len(a), a.get_forces(), a.get_stress(voigt=False)


def _assert_matches_calculator(mlip, structures, out):
    """``out`` (``mlip.predict(structures)``) agrees with SevenNet's own ASE calculator."""
    calc = mlip.ase_calculator()
    start = 0
    for i, s in enumerate(structures):
        e, f, st = _reference(calc, s)
        assert float(out.energy_per_atom[i]) == pytest.approx(e, abs=1e-5)
        np.testing.assert_allclose(out.forces[start:start + len(s)].numpy(), f, atol=1e-4)
        np.testing.assert_allclose(out.stress[i].numpy(), st, atol=1e-5)
        start += len(s)


def test_batched_forward_matches_sevennet_calculator(sevennet, perturbed_pair, triclinic):
    structures = [*perturbed_pair, triclinic]
    out = sevennet.predict(structures)
    assert out.errors == [None] * 3
    _assert_matches_calculator(sevennet, structures, out)


def test_neighbour_lists_are_reused_within_the_skin(sevennet, perturbed_pair):
    from pymatgen.core import Structure

    s = perturbed_pair[0]
    key = ("test", 0)
    first = sevennet.predict([s], keys=[key])
    moved = Structure(s.lattice, s.species, s.cart_coords + 0.001, coords_are_cartesian=True)
    again = sevennet.predict([moved], keys=[key])
    fresh = sevennet.predict([moved])
    assert first.fresh == [True] and again.fresh == [False]
    assert float(again.energy_per_atom[0]) == pytest.approx(
        float(fresh.energy_per_atom[0]), abs=1e-6)
    sevennet.forget([key])
    assert sevennet.predict([moved], keys=[key]).fresh == [True]
    sevennet.forget([key])


def test_isolated_atoms_are_an_error_not_a_crash(sevennet, rock_salt):
    from pymatgen.core import Lattice, Structure

    iso = Structure(Lattice.cubic(15.0), ["Si", "Si"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    out = sevennet.predict([iso, rock_salt])
    assert "isolated" in out.errors[0] and out.errors[1] is None
    assert math.isnan(float(out.energy_per_atom[0]))
    assert math.isfinite(float(out.energy_per_atom[1]))


def test_batched_relaxation_lowers_energy_and_converges(sevennet, perturbed_pair):
    from matgen.surrogates import RelaxConfig, relax

    cfg = RelaxConfig(fmax=0.05, max_steps=300)
    start = sevennet.predict(perturbed_pair, compute_stress=False).energy_per_atom
    res = relax(perturbed_pair, sevennet, cfg)
    for r, e0 in zip(res, start, strict=True):
        assert r.error is None and r.converged
        assert r.energy_per_atom < float(e0)


@pytest.mark.slow
def test_batched_relaxation_matches_ase_fire(sevennet, perturbed_pair):
    from matgen.surrogates import RelaxConfig, relax, relax_ase

    cfg = RelaxConfig(fmax=0.02, max_steps=500)
    ours = relax(perturbed_pair, sevennet, cfg)
    ref = relax_ase(perturbed_pair, sevennet, cfg)
    for a, b in zip(ours, ref, strict=True):
        assert a.converged and b.converged
        assert a.energy_per_atom == pytest.approx(b.energy_per_atom, abs=0.005)


def test_mp2020_corrections_apply_to_oxides_only(rock_salt):
    from pymatgen.core import Lattice, Structure

    from matgen.surrogates._mlip import mp2020_corrected

    feo = Structure(Lattice.cubic(4.3), ["Fe"] * 4 + ["O"] * 4,
                    [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                     [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]])
    e = mp2020_corrected([feo, rock_salt], [-7.0, -3.4])
    # oxide (-0.687 eV per O) and Fe GGA+U (-2.256 eV per Fe) corrections, per atom
    assert e[0] == pytest.approx(-7.0 - (0.687 + 2.256) / 2, abs=0.01)
    assert e[1] == pytest.approx(-3.4 - 0.614 / 2, abs=0.01)  # chloride anion correction
    assert np.isnan(mp2020_corrected([rock_salt], [math.nan])[0])


def test_is_suspect_threshold():
    from matgen.surrogates._score import SUSPECT_BELOW_HULL, is_suspect

    assert SUSPECT_BELOW_HULL == 0.05
    assert is_suspect(-0.06) and not is_suspect(-0.05) and not is_suspect(0.2)
    assert not is_suspect(float("nan")) and not is_suspect(None) and not is_suspect("")


def test_score_cli_sevennet_has_suspect_column(tmp_path, rock_salt, diamond_si):
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor
    from typer.testing import CliRunner

    from matgen.cli import app

    atoms = [AseAtomsAdaptor.get_atoms(s) for s in (rock_salt, diamond_si)]
    for i, a in enumerate(atoms):
        a.info["material_id"] = f"c{i}"
    write(tmp_path / "in.extxyz", atoms, format="extxyz")
    r = CliRunner().invoke(app, ["score", "--in", str(tmp_path / "in.extxyz"), "--out",
                                 str(tmp_path / "s.csv"), "--mlip", "sevennet-0", "--device",
                                 "cpu", "--max-steps", "20", "--predictors",
                                 str(tmp_path / "none")])
    assert r.exit_code == 0, r.output
    with open(tmp_path / "s.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["sample_id"] for row in rows] == ["c0", "c1"]
    for row in rows:
        assert row["error"] == "" and row["suspect"] in ("True", "False")
        assert row["suspect"] == str(float(row["e_above_hull"]) < -0.05)
    with open(tmp_path / "s.columns.csv") as fh:  # the outputs name the checkpoint's MLIP name
        doc = {r["column"]: r["meaning"] for r in csv.DictReader(fh)}
    assert "sevennet-0" in doc["e_form_per_atom"]
    r = CliRunner().invoke(app, ["score", "--in", str(tmp_path / "in.extxyz"), "--out",
                                 str(tmp_path / "x.csv"), "--mlip", "mace"])
    assert r.exit_code == 2 and "unknown MLIP" in r.output and "sevennet-0" in r.output


def test_mlip_names_pick_their_sevennet_checkpoint(perturbed_pair):
    """``sevennet`` is SevenNet-l3i5 (the default, F1 0.762 on WBM), ``sevennet-0`` SevenNet-0;
    each names its outputs and hull by its own name, so the two never share a key."""
    from matgen.surrogates import ConvexHull, SevenNetMLIP, default_hull, load_mlip
    from matgen.surrogates._mlip import DEFAULT_MLIP, MLIP_NAMES

    assert DEFAULT_MLIP == "sevennet" and set(MLIP_NAMES) == {"chgnet", "sevennet", "sevennet-0"}
    fast = load_mlip("sevennet-0", device="cpu")
    assert (fast.version, fast.name) == ("7net-0", "sevennet-0")
    best = load_mlip(DEFAULT_MLIP, device="cpu")
    assert (best.version, best.name) == ("7net-l3i5", "sevennet")
    assert SevenNetMLIP(device="cpu").name == "sevennet"  # cached weights: no second load
    a, b = fast.predict(perturbed_pair), best.predict(perturbed_pair)
    assert np.all(np.abs(a.energy_per_atom.numpy() - b.energy_per_atom.numpy()) > 1e-4)
    _assert_matches_calculator(best, perturbed_pair, b)  # l3i5's batched forward is right too
    for m in (fast, best):  # no shipped SevenNet elemental table: neither borrows another's
        assert default_hull(m).key == ConvexHull.from_mp(elemental="mp").key
    with pytest.raises(ValueError, match="sevennet-0"):
        load_mlip("7net")


def test_torch_neighbour_list_gives_matscipys_edges_and_energies(perturbed_pair, triclinic):
    import torch
    from pymatgen.core import Structure

    from matgen.surrogates import SevenNetMLIP
    from matgen.surrogates._neighbours import matscipy_neighbour_list as _neighbour_list
    from matgen.surrogates._neighbours import torch_neighbour_list

    t = triclinic
    outside = Structure(t.lattice, t.species, t.frac_coords + [[1.3, -0.6, 2.1]] * len(t))
    structures = [*perturbed_pair, triclinic, outside]
    for s in structures:
        lat, cart = np.array(s.lattice.matrix), np.array(s.cart_coords)
        ref = _neighbour_list(lat, cart, 5.0)
        got = [x.numpy() for x in torch_neighbour_list(torch.tensor(lat), torch.tensor(cart),
                                                       5.0)]

        def rows(src, dst, image):
            return sorted(zip(src.tolist(), dst.tolist(), map(tuple, image.round().tolist()),
                              strict=True))

        assert rows(*got) == rows(*ref)
    a = SevenNetMLIP("7net-0", device="cpu", neighbours="torch").predict(structures)
    b = SevenNetMLIP("7net-0", device="cpu", neighbours="matscipy").predict(structures)
    np.testing.assert_allclose(a.energy_per_atom, b.energy_per_atom, atol=1e-6)
    np.testing.assert_allclose(a.forces, b.forces, atol=1e-5)
    np.testing.assert_allclose(a.stress, b.stress, atol=1e-6)


def test_multi_fidelity_sevennet_needs_a_modal_and_matches_its_calculator(
        perturbed_pair, triclinic):
    from matgen.surrogates import SevenNetMLIP, load_mlip

    with pytest.raises(ValueError, match="modal"):
        SevenNetMLIP(model="7net-mf-0", device="cpu")
    with pytest.raises(ValueError, match="modal"):
        SevenNetMLIP(model="7net-mf-0", device="cpu", modal="PBE54")
    with pytest.raises(ValueError, match="no modal"):
        SevenNetMLIP(model="7net-0", device="cpu", modal="PBE")
    structures = [*perturbed_pair, triclinic]
    pbe = load_mlip("sevennet", device="cpu", model="7net-mf-0", modal="PBE")
    assert pbe.version == "7net-mf-0:PBE"
    out = pbe.predict(structures)
    assert out.errors == [None] * 3
    _assert_matches_calculator(pbe, structures, out)
    # the fidelity changes the energy scale: r2SCAN is not PBE
    scan = SevenNetMLIP(model="7net-mf-0", device="cpu", modal="R2SCAN").predict(structures)
    assert np.all(np.abs(scan.energy_per_atom.numpy() - out.energy_per_atom.numpy()) > 1e-3)

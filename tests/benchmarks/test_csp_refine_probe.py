"""benchmarks/csp_refine_probe.py and autoguidance_probe.py: the loose-match probes of #16."""

from __future__ import annotations

import argparse

import numpy as np
import torch
from ase.build import bulk
from ase.io import read, write

from matgen.nn import DenoiserOutput
from tests.benchmarks._bench import load_benchmark


def test_symmetrize_idealises_a_rattled_rock_salt_to_its_primitive_cell(tmp_path):
    a = bulk("NaCl", "rocksalt", a=5.64, cubic=True)  # 8 atoms, conventional cell
    a.positions += np.random.default_rng(0).normal(0, 0.01, a.positions.shape)
    a.info["material_id"] = "m1"
    src, dst = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    write(src, [a], format="extxyz")
    args = argparse.Namespace(generated=str(src), out=str(dst), symprec=0.1)
    got = load_benchmark("csp_refine_probe").symmetrize(args)
    assert got == {"structures": 1, "idealised": 1, "symprec": 0.1}
    (b,) = read(dst, index=":")
    assert sorted(b.numbers) == [11, 17] and b.info["material_id"] == "m1"
    assert abs(b.get_volume() - a.get_volume() / 4) < 0.5  # the primitive quarter


def test_reassign_keeps_each_composition_and_single_species_crystals(tmp_path):
    two = bulk("NaCl", "rocksalt", a=5.64)
    one = bulk("Cu", "fcc", a=3.6)
    src, dst = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    write(src, [two, one], format="extxyz")
    args = argparse.Namespace(generated=str(src), out=str(dst), time=0.05, margin=0.0,
                              checkpoint=None)
    got = load_benchmark("csp_refine_probe").reassign(args)
    assert got["structures"] == 2 and got["reassigned"] in (0, 1)
    a, b = read(dst, index=":")
    assert sorted(a.numbers) == [11, 17] and list(b.numbers) == [29]


def test_autoguidance_is_weak_plus_w_times_the_difference():
    ag = load_benchmark("autoguidance_probe")

    def const(c):
        class M(torch.nn.Module):
            def forward(self, batch, t, cond=None):
                return DenoiserOutput(torch.full((2, 3), c), torch.full((1, 3, 3), c),
                                      torch.zeros(2, 4))
        return M()

    out = ag.AutoGuided(const(1.0), const(0.5), 2.0)(None, torch.zeros(1))
    assert torch.allclose(out.coord, torch.full((2, 3), 1.5))
    assert torch.allclose(out.lattice, torch.full((1, 3, 3), 1.5))


def test_lattice_numbers_are_basis_free_and_grouped_by_match(tmp_path):
    """A prediction in another basis of the same cell has zero cell error; a strained one has
    its strain; rows land in their match group."""
    import pandas as pd
    from pymatgen.core import Lattice, Structure

    ref = Structure(Lattice.cubic(4.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    same = ref.copy()
    same.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 1]])  # another basis, same cell
    strained = ref.copy()
    strained.apply_strain([0.05, 0.0, 0.0])
    frames = [a for s in (same, strained) for a in [s.to_ase_atoms()]]
    write(tmp_path / "g.extxyz", frames, format="extxyz")
    pd.DataFrame({"material_id": ["m1", "m2"], "cif": [ref.to(fmt="cif")] * 2}).to_csv(
        tmp_path / "ref.csv", index=False)
    pd.DataFrame({"frame_index": [0, 1], "material_id": ["m1", "m2"], "matched": [True, True],
                  "rms_dist": [0.001, 0.3]}).to_csv(tmp_path / "per.csv", index=False)
    args = argparse.Namespace(generated=str(tmp_path / "g.extxyz"),
                              per_structure=str(tmp_path / "per.csv"),
                              reference=str(tmp_path / "ref.csv"), loose=0.2)
    got = load_benchmark("csp_refine_probe").lattice(args)
    tight, loose = got["rows"]
    assert tight["group"] == "tight" and loose["group"] == "loose"
    assert tight["volume_err"] < 1e-9 and tight["length_err"] < 1e-9 and tight["angle_err"] < 1e-6
    assert abs(loose["length_err"] - 0.05) < 1e-6 and abs(loose["volume_err"] - 0.05) < 1e-6
    assert got["groups"]["loose"]["n"] == 1


def test_framework_tells_a_site_swap_from_another_arrangement(tmp_path):
    """Only loose matches are probed; a prediction with two species swapped has the reference's
    framework (RMS ~0 with species ignored), a displaced one does not."""
    import pandas as pd
    from pymatgen.core import Lattice, Structure

    ref = Structure(Lattice.tetragonal(4.0, 6.0), ["Ba", "Ti", "O"],
                    [[0, 0, 0], [0.5, 0.5, 0.3], [0.5, 0.5, 0.8]])
    swapped = Structure(ref.lattice, ["Ti", "Ba", "O"], ref.frac_coords)
    moved = Structure(ref.lattice, ["Ba", "Ti", "O"],
                      [[0, 0, 0], [0.5, 0.5, 0.45], [0.5, 0.5, 0.8]])
    write(tmp_path / "g.extxyz", [s.to_ase_atoms() for s in (ref, swapped, moved)],
          format="extxyz")
    pd.DataFrame({"material_id": ["m1", "m2", "m3"], "cif": [ref.to(fmt="cif")] * 3}).to_csv(
        tmp_path / "ref.csv", index=False)
    pd.DataFrame({"frame_index": [0, 1, 2], "material_id": ["m1", "m2", "m3"],
                  "matched": [True, True, True], "rms_dist": [0.0, 0.3, 0.35]}).to_csv(
        tmp_path / "per.csv", index=False)
    args = argparse.Namespace(generated=str(tmp_path / "g.extxyz"),
                              per_structure=str(tmp_path / "per.csv"),
                              reference=str(tmp_path / "ref.csv"), loose=0.2)
    got = load_benchmark("csp_refine_probe").framework(args)
    assert got["matched"] == 3 and got["loose"] == 2
    by_id = {r["material_id"]: r["rms_framework"] for r in got["rows"]}
    assert by_id["m2"] < 1e-6
    assert by_id["m3"] is None or by_id["m3"] > 0.05
    assert got["framework_tight_lt_0.1"] == 1

"""benchmarks/csp_train_val_gap.py: per-split summaries and the seen / unseen grouping."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.benchmarks._bench import load_benchmark


def _per(rows):
    frame = pd.DataFrame(rows, columns=["material_id", "matched", "rms_dist"])
    return frame.set_index("material_id")


def test_split_summary_counts_matches_loose_and_tight():
    got = load_benchmark("csp_train_val_gap").split_summary(
        _per([("a", True, 0.30), ("b", True, 0.02), ("c", False, None), ("d", True, 0.04)]))
    assert got["rows"] == 4 and got["matched"] == 3 and got["loose"] == 1
    assert got["match_rate"] == pytest.approx(0.75)
    assert got["rmse"] == pytest.approx(0.12)
    assert got["tight_rms_mean"] == pytest.approx(0.03)


def test_grouped_splits_rows_by_key_and_treats_unknown_rows_as_unseen():
    per = _per([("a", True, 0.1), ("b", False, None), ("c", True, 0.3)])
    got = load_benchmark("csp_train_val_gap").grouped(per, pd.Series({"a": True, "b": False}))
    assert got["seen"]["rows"] == 1 and got["seen"]["matched"] == 1
    assert got["unseen"]["rows"] == 2 and got["unseen"]["loose"] == 1


def test_formula_keys_reduce_formulas_and_sort_elements():
    frame = pd.DataFrame({"pretty_formula": ["Fe2O3", "Fe4O6", "OLi2"]})
    formula, chemsys = load_benchmark("csp_train_val_gap")._formula_keys(frame)
    assert formula[0] == formula[1] == "Fe2O3"
    assert list(chemsys) == ["Fe-O", "Fe-O", "Li-O"]


def test_train_polymorph_hits_finds_a_generated_crystal_that_is_a_train_crystal(tmp_path):
    from ase.io import write
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"],
                                         [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()
    cscl = Structure(Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    frames = []
    for mid, s in (("v1", rocksalt.copy()), ("v2", cscl)):
        s.perturb(0.02, 0.0)
        a = AseAtomsAdaptor.get_atoms(s)
        a.info["material_id"] = mid
        frames.append(a)
    write(tmp_path / "val.extxyz", frames, format="extxyz")
    train = pd.DataFrame({"cif": [rocksalt.to(fmt="cif")]}, index=["t1"])
    formula = pd.Series({"v1": "NaCl", "v2": "NaCl"})
    hits = load_benchmark("csp_train_val_gap").train_polymorph_hits(
        tmp_path / "val.extxyz", ["v1", "v2"], train, formula, pd.Series({"t1": "NaCl"}))
    assert hits == 1  # the rocksalt frame is the train crystal; CsCl is not


def test_familiarity_classes_and_their_breakdown_by_number_of_elements():
    g = load_benchmark("csp_train_val_gap")
    formula = pd.Series({"a": "NaCl", "b": "Na2Cl", "c": "LiF", "d": "KBr"})
    chemsys = pd.Series({"a": "Cl-Na", "b": "Cl-Na", "c": "F-Li", "d": "Br-K"})
    cls = g.familiarity(formula, chemsys, pd.Series(["NaCl", "LiF"]), pd.Series(["Cl-Na", "F-Li"]))
    assert dict(cls) == {"a": "formula seen", "b": "chemsys seen only", "c": "formula seen",
                         "d": "chemsys unseen"}
    per = _per([("a", True, 0.1), ("b", False, None), ("c", False, None), ("d", True, 0.3)])
    got = g.by_familiarity(per, cls, pd.Series({"a": 2, "b": 2, "c": 2, "d": 3}))
    assert got["formula seen"]["rows"] == 2 and got["formula seen"]["matched"] == 1
    assert got["chemsys unseen"]["loose"] == 1
    assert set(got["by_num_elements"]) == {"2", "3"}
    assert got["by_num_elements"]["3"]["chemsys unseen"]["matched"] == 1


def test_logistic_fit_recovers_known_coefficients():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 2))
    p = 1 / (1 + np.exp(-(0.5 + 1.0 * x[:, 0] - 2.0 * x[:, 1])))
    y = (rng.random(20000) < p).astype(float)
    w = load_benchmark("csp_train_val_gap").logistic_fit(x, y)
    assert np.allclose(w, [0.5, 1.0, -2.0], atol=0.08)

"""How `matgen sample` turns formulas and CSV rows into cells to generate."""

from __future__ import annotations

import pytest
import torch

from matgen.generate import SampleInputError, expand_formula, requests_de_novo, requests_from_csv

META = {"dataset_stats": {"num_atoms_hist": {"2": 5, "4": 5, "8": 1},
                          "formula_units_hist": {"1": 1, "2": 3, "4": 1}}}


def test_formula_as_written_and_times_z():
    g = torch.Generator().manual_seed(0)
    assert sorted(expand_formula("Na4Cl4", "as-written", META, g)) == [11] * 4 + [17] * 4
    assert sorted(expand_formula("NaCl", 3, META, g)) == [11] * 3 + [17] * 3
    with pytest.raises(SampleInputError, match="whole number"):
        expand_formula("NaCl0.5", "as-written", META, g)
    with pytest.raises(SampleInputError, match="bad formula"):
        expand_formula("Xx2", "as-written", META, g)


def test_formula_auto_draws_z_from_training_cells():
    g = torch.Generator().manual_seed(0)
    sizes = {len(expand_formula("NaCl", "auto", META, g)) for _ in range(200)}
    assert sizes == {2, 4, 8}  # Z in {1, 2, 4}, cells up to the largest training cell (8)
    big = {len(expand_formula("SrTiO3", "auto", META, g)) for _ in range(50)}
    assert big == {5}  # Z=2 would give 10 atoms > 8: only Z=1 fits


def test_de_novo_sizes_follow_the_histogram():
    g = torch.Generator().manual_seed(0)
    reqs = requests_de_novo(2000, META, g)
    counts = {k: sum(r.num_atoms == k for r in reqs) for k in (2, 4, 8)}
    assert all(r.atomic_numbers is None for r in reqs)
    assert abs(counts[2] / 2000 - 5 / 11) < 0.05 and abs(counts[8] / 2000 - 1 / 11) < 0.03


def test_csv_with_formulas_reports_bad_rows(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("material_id,formula\na,NaCl\nb,Qq3\nc,Fe2O3\n")
    reqs, skipped = requests_from_csv(p, 2, "as-written", META, torch.Generator())
    assert [r.material_id for r in reqs] == ["a", "a", "c", "c"]
    assert reqs[2].composition == "Fe2O3" and reqs[2].num_atoms == 5
    assert len(skipped) == 1 and "row 2 (b)" in skipped[0]

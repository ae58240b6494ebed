"""Oracles: dataset by id and by structure, MLIP oracle plumbing, lab results parsing."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from matgen.campaign import DatasetOracle, LabOracle, MLIPOracle


def test_dataset_oracle_matches_by_id_and_by_structure(toy_csv):
    df = pd.read_csv(toy_csv)
    row = df.iloc[5]
    by_id = DatasetOracle(toy_csv, ["band_gap", "e_above_hull"])
    out = by_id.request([{"id": "c1", "source_id": row["material_id"], "cif": row["cif"]},
                         {"id": "c2", "source_id": "unknown", "cif": row["cif"]}], 0)
    assert out["c1"] == {"band_gap": row["band_gap"], "e_above_hull": row["e_above_hull"]}
    assert all(math.isnan(v) for v in out["c2"].values())
    by_s = DatasetOracle(toy_csv, ["band_gap"], match="structure")
    from pymatgen.core import Structure

    s = Structure.from_str(row["cif"], fmt="cif")
    s.perturb(0.01)  # a slightly different cell of the same crystal still matches
    out = by_s.request([{"id": "c3", "source_id": None, "cif": s.to(fmt="cif")}], 0)
    assert out["c3"]["band_gap"] == pytest.approx(row["band_gap"])
    with pytest.raises(ValueError, match="no column"):
        DatasetOracle(toy_csv, ["bulk_modulus"])


def test_mlip_oracle_returns_energy_and_hull(toy_csv):
    df = pd.read_csv(toy_csv)
    calls = []

    def relax_fn(structures, fmax, steps):
        calls.append((len(structures), fmax, steps))
        return [-3.0 - i for i in range(len(structures))]

    o = MLIPOracle(relax_fn=relax_fn, hull_fn=lambda s, e: e + 3.0, fmax=0.01, steps=7)
    out = o.request([{"id": f"c{i}", "cif": df["cif"][i]} for i in range(2)], 0)
    assert calls == [(2, 0.01, 7)]
    assert out["c1"] == {"energy_per_atom": -4.0, "e_above_hull": -1.0}


def test_lab_results_reject_bad_files(tmp_path):
    lab = LabOracle(tmp_path / "out", ["band_gap"])
    bad = tmp_path / "r.csv"
    bad.write_text("id,band_gap\nx,1\n")
    with pytest.raises(ValueError, match="candidate_id"):
        lab.read_results(bad)
    ok = tmp_path / "ok.csv"
    ok.write_text("candidate_id,band_gap,formula\n a ,1.5,NaCl\nb,,KCl\n")
    res = lab.read_results(ok)
    assert res.as_dict() == {"a": {"band_gap": 1.5}}  # b has no value: never closed
    assert len(res.errors) == 1 and ":3: b: no value for band_gap" in res.errors[0]

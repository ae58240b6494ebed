"""Slow: S.U.N. with the real default scorer (CHGNet relaxation + MP reference hull)."""

from __future__ import annotations

import math

import pytest

from matgen.evaluation import STABILITY_NOTE, evaluate_sun, generated_from_structures, mlip_scorer


@pytest.mark.slow
def test_sun_with_chgnet_and_mp_hull(datasets_dir, monkeypatch, rock_salt, triclinic):
    monkeypatch.setenv("MATGEN_DATA_DIR", str(datasets_dir))
    scorer, name = mlip_scorer("chgnet", device="cpu")
    res = evaluate_sun(
        generated_from_structures([rock_salt, triclinic]), scorer, scorer_name=name,
        progress=False,
    )  # fmt: skip
    m = res.metrics
    assert m["stability_judged_by"] == STABILITY_NOTE and "chgnet" in m["scorer"]
    assert m["num_relaxed"] == 2
    rows = res.per_structure
    assert all(math.isfinite(r["e_above_hull_mlip"]) for r in rows)
    # rock salt NaCl is on (or within a few tens of meV of) the MP hull
    assert abs(rows[0]["e_above_hull_mlip"]) < 0.1
    # the made-up triclinic LiFeO2 moves when relaxed and is less stable than rock salt
    assert rows[1]["rmsd_to_relaxed"] > rows[0]["rmsd_to_relaxed"]
    assert rows[1]["e_above_hull_mlip"] > rows[0]["e_above_hull_mlip"]

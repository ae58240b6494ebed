"""Per-round guards: exploitation, diversity collapse, stability-synthesizability gap."""

from __future__ import annotations

from pymatgen.core import Lattice, Structure

from matgen.campaign import GuardConfig, round_metrics


def _row(cid: str, formula: str, species, pred: float, std: float | None) -> dict:
    s = Structure(Lattice.cubic(4.0), species, [[0, 0, 0], [0.5, 0.5, 0.5]])
    sc = {"e_above_hull": pred}
    if std is not None:
        sc["e_above_hull_std"] = std
    return {"id": cid, "reduced_formula": formula, "cif": s.to(fmt="cif"), "spacegroup": "Pm-3m",
            "scores": sc}


def test_guards_flag_exploitation_and_collapse():
    batch = [_row("a", "NaCl", ["Na", "Cl"], 0.0, 0.01), _row("b", "NaCl", ["Na", "Cl"], 0.0, 0.01),
             _row("c", "NaCl", ["Na", "Cl"], 0.0, None), _row("d", "KBr", ["K", "Br"], 0.0, 0.01)]
    labels = {c["id"]: {"e_above_hull": 0.2} for c in batch}
    m = round_metrics(batch, labels, ["e_above_hull"], lambda lab: lab["e_above_hull"] <= 0.1,
                      GuardConfig(max_exploitation_z=2.0, min_distinct_fraction=0.75))
    ex = m["exploitation"]["e_above_hull"]
    assert ex["bias"] == -0.2 and abs(ex["mean_abs_z"] - 20.0) < 1e-9  # the std-less row skipped
    assert m["diversity"]["distinct_formulas"] == 2 and m["diversity"]["formula_fraction"] == 0.5
    assert len(m["alerts"]) == 2
    ssg = m["stability_synthesizability"]
    assert ssg["stable_fraction"] == 0.0 and ssg["smact_fraction"] == 1.0  # oracle labels win
    assert m["hits"] == 0
    labels = {c["id"]: {"e_above_hull": 0.0} for c in batch}
    m = round_metrics(batch, labels, ["e_above_hull"], lambda lab: lab["e_above_hull"] <= 0.1,
                      GuardConfig(min_distinct_fraction=0.5))
    assert m["alerts"] == [] and m["hits"] == 4
    assert m["stability_synthesizability"]["stable_and_smact_fraction"] == 1.0

"""The lab hand-off: merit ranking, column dictionary, symmetrised CIFs with sidecars, and a
report whose hull diagrams use the MP reference hull that e_above_hull was computed on."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest

from matgen.campaign import Campaign, export_campaign, load_config
from matgen.campaign._export import is_hit, suspect_reason


@pytest.fixture()
def campaign(toy_config):
    camp = Campaign(load_config(toy_config))
    camp.run()
    return camp


def _rows(folder):
    return list(csv.DictReader((folder / "candidates.csv").open()))


def test_rank_is_merit_hits_first_and_every_column_explained(tmp_path, campaign):
    folder = export_campaign(campaign.store, tmp_path, campaign.cfg.property_names())
    rows = _rows(folder)
    outcome = [r["outcome"] for r in rows]
    order = {"hit": 0, "awaiting oracle": 1, "miss": 2}
    assert [order[o] for o in outcome] == sorted(order[o] for o in outcome)
    assert "hit" in outcome and "miss" in outcome
    labels = campaign.store.labels()
    for r in rows:  # the hit column agrees with the campaign's own hit rule
        assert (r["hit"] == "True") == campaign.is_hit(labels[r["id"]])
    # no always-empty column (e.g. an e_above_hull_std no scorer fills)
    for col in rows[0]:
        assert any(r[col] != "" for r in rows), col
    with (folder / "columns.csv").open() as fh:
        doc = {d["column"]: d for d in csv.DictReader(fh)}
    assert list(doc) == list(rows[0])
    assert all(d["meaning"] for d in doc.values())
    assert doc["e_above_hull"]["unit"] == "eV/atom" and doc["band_gap"]["unit"] == "eV"
    assert "ood_score > 0.8" in doc["ood_flag"]["meaning"]
    assert "within a round" in doc["acquisition_value"]["meaning"]
    assert "band_gap <= 3" in doc["hit"]["meaning"]
    assert "0.05 eV/atom below the MP hull" in doc["suspect"]["meaning"]
    assert {r["suspect"] for r in rows} <= {"True", "False"}


def test_cifs_are_symmetrised_named_by_id_and_have_score_sidecars(tmp_path, campaign):
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

    folder = export_campaign(campaign.store, tmp_path, campaign.cfg.property_names())
    by_id = {c["id"]: c for c in campaign.store.candidates(selected=True)}
    for r in _rows(folder):
        text = (folder / "cif" / f"{r['id']}.cif").read_text()
        assert re.search(rf"^data_{re.escape(r['id'])}$", text, re.MULTILINE)
        assert "_symmetry_space_group_name_H-M   Fm-3m" in text  # rock salt, not P1
        assert r["spacegroup"] == "Fm-3m (225)"
        s = Structure.from_str(text, fmt="cif")
        assert StructureMatcher().fit(s, Structure.from_str(by_id[r["id"]]["cif"], fmt="cif"))
        side = json.loads((folder / "cif" / f"{r['id']}.json").read_text())
        assert side["id"] == r["id"] and side["outcome"] == r["outcome"]
        assert side["units"]["e_above_hull"] == "eV/atom"


def test_report_states_the_judge_the_hit_rule_and_links_the_cifs(tmp_path, campaign):
    folder = export_campaign(campaign.store, tmp_path, campaign.cfg.property_names())
    html = (folder / "report.html").read_text()
    assert "What judged stability" in html and "simulated oracle" in html
    assert "A candidate is a hit when" in html
    assert "class='sortable'" in html and "<script>" in html
    for r in _rows(folder):
        assert f"href='cif/{r['id']}.cif'" in html
    assert "distribution of band_gap" in html and "progress per round" in html
    assert html.count("img class='thumb'") == len(_rows(folder))  # structure pictures
    # the toy scorer names no MP hull: said so, no diagram drawn
    assert "no hull diagram is drawn" in html


def test_hull_columns_and_diagrams_use_the_scoring_hull(tmp_path, campaign):
    """With MP-hull scores (as the surrogate scorer writes them), the competing phases and the
    hull energy in the CSV reproduce e_above_hull, and a diagram per system is drawn."""
    from sqlalchemy import update

    from matgen.campaign._store import rounds as rounds_table
    from matgen.surrogates import ConvexHull

    hull = ConvexHull.from_mp()
    store = campaign.store
    with store.transaction() as conn:
        conn.execute(update(rounds_table).where(rounds_table.c.campaign_id == store.campaign_id)
                     .values(hull_version=hull.version))
        for c in store.candidates(selected=True):
            sc = dict(c["scores"] or {})
            e_hull = hull.hull_energy_per_atom(c["reduced_formula"])
            sc["e_form_per_atom"] = e_hull + sc["e_above_hull"]
            store.update_candidate(conn, c["id"], scores=sc)
    folder = export_campaign(store, tmp_path, campaign.cfg.property_names())
    rows = _rows(folder)
    for r in rows:
        assert r["competing_phases"]
        assert math.isclose(float(r["hull_e_form_per_atom"]) + float(r["e_above_hull"]),
                            float(r["e_form_per_atom"]), abs_tol=1e-4)
        assert r["mp_composition"] in ("True", "False") and r.get("novel", "") in ("True", "False", "")
    html = (folder / "report.html").read_text()
    assert "no hull diagram is drawn" not in html and "MP reference data differ" not in html
    systems = {"-".join(sorted(re.findall(r"[A-Z][a-z]?", r["reduced_formula"]))) for r in rows}
    assert html.count("<figcaption>hull ") == min(len(systems), 6)


def test_hit_and_suspect_rules():
    objs = [{"property": "e_above_hull", "maximum": 0.1, "scale": 0.1}]
    assert is_hit({"e_above_hull": 0.05}, objs) is True
    assert is_hit({"e_above_hull": 0.15}, objs) is False
    assert is_hit({"e_above_hull": float("nan")}, objs) is False
    assert is_hit({}, objs) is None
    assert "below the MP hull" in suspect_reason({"oracle_e_above_hull": -19.3})
    assert suspect_reason({"e_above_hull": -0.02, "oracle_e_above_hull": 0.01}) == ""
    # the scorer's threshold (issue 17): more than 0.05 eV/atom below the hull
    assert "prediction puts it 0.06" in suspect_reason({"e_above_hull": -0.06})

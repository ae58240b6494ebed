"""The DFT oracle's wiring with a fake verifier (no GPAW): labels, labelled failures, config.

The same oracle with GPAW itself, through a campaign and a kill -9: tests/dft/test_gpaw_oracle.py.
"""

from __future__ import annotations

import math

import pytest
from _fake_dft import FakeVerifier, dft_config
from _toy import write_toy_csv

from matgen.campaign import Campaign, DFTOracle, load_config
from matgen.campaign._components import build_oracle


def _rows(toy_csv, formulas):
    import pandas as pd
    from pymatgen.core import Structure

    df = pd.read_csv(toy_csv)
    out = []
    for r in df.itertuples():
        f = Structure.from_str(r.cif, fmt="cif").composition.reduced_formula
        if f in formulas:
            out.append({"id": f"c-{f}", "cif": r.cif, "source_id": r.material_id})
    return out


def test_labels_are_numbers_only_where_the_calculation_converged(tmp_path, toy_csv):
    fake = FakeVerifier()
    o = DFTOracle(tmp_path / "cache", verifier=fake)
    out = o.request(_rows(toy_csv, {"LiF", "NaCl"}), 0)
    assert out["c-LiF"]["e_above_hull"] == pytest.approx(0.01 * ((3 + 9) % 7))
    assert out["c-LiF"]["energy_per_atom"] == pytest.approx(-3.12)
    assert all(math.isnan(v) for v in out["c-NaCl"].values())  # never a number
    assert o.failures == {"c-NaCl": "dft scf_not_converged: 200 iterations"}
    assert fake.calls == ["c-LiF", "c-NaCl"]  # the candidate id names the GPAW log
    import json

    kept = json.loads((tmp_path / "cache" / "candidates" / "c-NaCl.json").read_text())
    assert kept["dft_status"] == "scf_not_converged"  # the whole row, for the record
    # a structure DFT cannot start from is a labelled failure too, not an exception
    bad = o.request([{"id": "x", "cif": "not a cif"}], 0)
    assert all(math.isnan(v) for v in bad["x"].values()) and "unreadable" in o.failures["x"]


def test_map_fn_runs_each_candidate(tmp_path, toy_csv):
    seen = []

    def map_fn(fn, rows):  # what the Prefect flow passes: one task per candidate
        seen.extend(r["id"] for r in rows)
        return [fn(r) for r in rows]

    o = DFTOracle(tmp_path, verifier=FakeVerifier(), map_fn=map_fn)
    o.request(_rows(toy_csv, {"LiF", "KBr"}), 0)
    assert sorted(seen) == ["c-KBr", "c-LiF"]


@pytest.fixture()
def pool_with_a_failure(tmp_path):
    """The toy pool cut to the batch: 4 rows, NaCl among them (every one is selected)."""
    import pandas as pd

    df = pd.read_csv(write_toy_csv(tmp_path / "all.csv"))
    keep = df[df.material_id.str.startswith(("toy-00", "toy-01"))]  # Li*, Na* (NaCl = toy-01-4)
    path = tmp_path / "pool.csv"
    keep[keep.material_id.isin(["toy-00-0", "toy-00-3", "toy-01-4", "toy-01-6"])].to_csv(
        path, index=False)
    return path


def test_campaign_labels_with_the_dft_oracle(tmp_path, pool_with_a_failure, monkeypatch):
    import matgen.dft

    monkeypatch.setattr(matgen.dft, "gpaw_available", lambda: True)
    cfg = load_config(dft_config(tmp_path, pool_with_a_failure))
    o = build_oracle(cfg)
    assert isinstance(o, DFTOracle) and o.cache_dir == cfg.work_path() / "dft_cache"
    fake = FakeVerifier()
    o._verifier = fake
    camp = Campaign(cfg, oracle=o)
    camp.run()
    subs = {s["candidate_id"]: s for s in camp.store.submissions()}
    assert len(subs) == 4 and all(s["oracle"] == "dft:gpaw-pbe" for s in subs.values())
    assert len(o.failures) == 1  # NaCl is in the batch (the test pool is the batch's size)
    labels = camp.store.labels()
    for cid, s in subs.items():
        if cid in o.failures:
            assert s["status"] == "failed" and s["detail"].startswith("dft scf_not_converged")
            assert all(v is None for v in labels.get(cid, {}).values())
        else:
            assert s["status"] == "done" and labels[cid]["e_above_hull"] is not None
    # asking again (a resumed campaign) labels nothing twice
    n = len(fake.calls)
    camp.run()
    assert len(fake.calls) == n


def test_dft_settings_from_the_config(tmp_path, pool_with_a_failure, monkeypatch):
    path = dft_config(tmp_path, pool_with_a_failure,
                       ", ecut_ev: 300, dft_time_limit_s: 60, dft_relax: false")
    s = load_config(path).oracle.dft_settings()
    assert (s.ecut_ev, s.time_limit_s, s.relax, s.kpt_density) == (300.0, 60.0, False, 4.0)


def test_config_errors_are_one_line_naming_the_entry(tmp_path, pool_with_a_failure, monkeypatch):
    import pydantic

    import matgen.dft
    from matgen.campaign import CampaignConfigError
    from matgen.campaign._checks import check_config

    path = dft_config(tmp_path, pool_with_a_failure, ", dft_time_limit_s: 0")
    with pytest.raises(pydantic.ValidationError, match="dft_time_limit_s"):
        load_config(path)
    monkeypatch.setattr(matgen.dft, "gpaw_available", lambda: False)
    cfg = load_config(dft_config(tmp_path, pool_with_a_failure))
    with pytest.raises(CampaignConfigError) as err:
        check_config(cfg)
    assert err.value.problems == [
        "oracle.kind: dft needs GPAW and its PAW datasets (the dft extra): bash "
        + "scripts/install_dft.sh"
    ]
    # an objective the DFT oracle does not label is named as for the other oracles
    monkeypatch.setattr(matgen.dft, "gpaw_available", lambda: True)
    bad = load_config(dft_config(tmp_path, pool_with_a_failure))
    bad = bad.model_copy(update={"objectives": [
        bad.objectives[0].model_copy(update={"property": "band_gap"})]})
    with pytest.raises(CampaignConfigError, match="the dft oracle does not label it"):
        check_config(bad)


def test_lab_export_names_the_judge_of_each_number(tmp_path, pool_with_a_failure, monkeypatch):
    import csv

    import matgen.dft
    from matgen.campaign import export_campaign

    monkeypatch.setattr(matgen.dft, "gpaw_available", lambda: True)
    cfg = load_config(dft_config(tmp_path, pool_with_a_failure))
    camp = Campaign(cfg, oracle=DFTOracle(tmp_path / "c", verifier=FakeVerifier()))
    camp.run()
    folder = export_campaign(camp.store, tmp_path / "export", cfg.property_names())
    rows = list(csv.DictReader((folder / "candidates.csv").open()))
    assert len(rows) == 4 and "NaCl" in {r["reduced_formula"] for r in rows}
    for r in rows:
        assert r["e_above_hull_judge"] == "dataset"  # the stand-in scorer of this campaign
        if r["reduced_formula"] in ("NaCl",):
            assert r["oracle_e_above_hull"] == "" and r["oracle_e_above_hull_judge"] == ""
            assert r["oracle_failure"].startswith("dft scf_not_converged")
        else:
            assert r["oracle_e_above_hull_judge"] == "dft:gpaw-pbe"
            assert r["oracle_energy_per_atom_judge"] == "dft:gpaw-pbe"
    doc = {r["column"]: r["meaning"] for r in csv.DictReader((folder / "columns.csv").open())}
    assert "dft:gpaw-pbe" in doc["oracle_e_above_hull_judge"]
    assert "GPAW PBE DFT" in doc["oracle_e_above_hull"]
    assert "scf_not_converged" in doc["oracle_failure"]

"""``matgen score --oracle dft --top K`` with stand-ins for the MLIP and GPAW: which rows are
verified, the dft_* and judge columns, failures as statuses, usage errors (no GPAW needed)."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from matgen.cli import app

HULL = {"NaCl": 0.30, "KBr": 0.02, "LiF": 0.10, "CsI": 0.05}  # the stand-in MLIP's numbers


class FakeVerifier:
    def __init__(self):
        self.labels: list[str] = []

    def verify_one(self, structure, label=""):
        self.labels.append(label)
        f = structure.composition.reduced_formula
        if f == "CsI":
            return {"dft_status": "timeout", "dft_message": "killed at the time limit of 5 s",
                    "dft_energy_per_atom": None, "dft_e_above_hull": None, "judge": "dft:gpaw-pbe"}
        return {"dft_status": "ok", "dft_message": "", "dft_energy_per_atom": -4.0,
                "dft_e_form_per_atom": -1.0, "dft_e_above_hull": HULL[f] + 0.01,
                "dft_mp_correction": "none", "judge": "dft:gpaw-pbe"}


def _fake_score(res, mlip, device, predictors, cfg, progress):
    rows = []
    for i, s in enumerate(res.batch.to_structures()):
        f = s.composition.reduced_formula
        rows.append({"id": f"s{i}", "formula": f, "energy_per_atom": -3.0,
                     "e_above_hull": HULL[f], "relaxed_cif": s.to(fmt="cif"), "error": ""})
    return rows, type("M", (), {"name": "chgnet"})()


@pytest.fixture
def inputs(tmp_path):
    from pymatgen.core import Lattice, Structure

    rows = []
    for f, a in (("NaCl", 5.6), ("KBr", 6.6), ("LiF", 4.0), ("CsI", 7.3)):
        el = [f[:2] if f[1].islower() else f[:1], f[2:] if f[1].islower() else f[1:]]
        s = Structure(Lattice.cubic(a / 2 * 1.0), el, [[0, 0, 0], [0.5, 0.5, 0.5]])
        rows.append((f"m-{f}", s.to(fmt="cif")))
    path = tmp_path / "in.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["material_id", "cif"])
        w.writerows(rows)
        w.writerow(["m-bad", "not a cif"])
    return path


@pytest.fixture
def fakes(monkeypatch):
    import matgen.cli._dft
    import matgen.cli.score
    import matgen.dft

    fake = FakeVerifier()
    monkeypatch.setattr(matgen.cli.score, "_score_batch", _fake_score)
    monkeypatch.setattr(matgen.dft, "gpaw_available", lambda: True)
    monkeypatch.setattr(matgen.cli._dft, "make_verifier", lambda cache, t: fake)
    return fake


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_top_k_rows_get_dft_columns_and_judges(inputs, tmp_path, fakes):
    out = tmp_path / "s.csv"
    r = CliRunner().invoke(app, ["score", "--in", str(inputs), "--out", str(out),
                                 "--oracle", "dft", "--top", "3", "--no-progress"])
    assert r.exit_code == 1, r.output  # the unreadable entry: bad data, the rest went through
    assert "Traceback" not in r.output and "bad entry" in r.output
    rows = {x["formula"]: x for x in _read(out) if x["formula"]}
    assert sorted(fakes.labels) == ["s1", "s2", "s3"]  # KBr 0.02, CsI 0.05, LiF 0.10 (not NaCl)
    assert [rows[f]["dft_rank"] for f in ("KBr", "CsI", "LiF")] == ["1", "2", "3"]
    assert float(rows["KBr"]["dft_e_above_hull"]) == pytest.approx(0.03)
    assert rows["KBr"]["dft_e_above_hull_judge"] == "dft:gpaw-pbe"
    assert rows["KBr"]["e_above_hull_judge"] == "chgnet"
    # a failed calculation: a status, no number, no judge of a number
    assert rows["CsI"]["dft_status"] == "timeout" and rows["CsI"]["dft_e_above_hull"] == ""
    assert rows["CsI"]["dft_e_above_hull_judge"] == ""
    assert "dft failed s3: timeout" in r.output and "dft s1: e_above_hull +0.030" in r.output
    # not verified: MLIP numbers and judge only
    assert rows["NaCl"]["dft_status"] == "" and rows["NaCl"]["e_above_hull_judge"] == "chgnet"
    with open(tmp_path / "s.columns.csv") as fh:
        doc = {x["column"]: x for x in csv.DictReader(fh)}
    assert doc["dft_e_above_hull"]["unit"] == "eV/atom" and "GPAW" in doc[
        "dft_e_above_hull"]["meaning"]
    assert "MLIP" in doc["e_above_hull_judge"]["meaning"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top", "2"], "--top and --dft-cache go with --oracle dft"),
        (["--oracle", "vasp"], "--oracle must be dft, not 'vasp'"),
        (["--oracle", "dft", "--top", "0"], "--top"),
    ],
)
def test_usage_errors_exit_2_before_any_work(inputs, tmp_path, fakes, args, message):
    r = CliRunner().invoke(app, ["score", "--in", str(inputs), "--out", str(tmp_path / "s.csv"),
                                 *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "s.csv").exists() and fakes.labels == []


def test_without_gpaw_the_oracle_is_a_usage_error(inputs, tmp_path, fakes, monkeypatch):
    import matgen.dft

    monkeypatch.setattr(matgen.dft, "gpaw_available", lambda: False)
    r = CliRunner().invoke(app, ["score", "--in", str(inputs), "--out", str(tmp_path / "s.csv"),
                                 "--oracle", "dft"])
    assert r.exit_code == 2 and "bash scripts/install_dft.sh" in r.output

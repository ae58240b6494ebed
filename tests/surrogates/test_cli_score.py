"""`matgen score` through typer's CliRunner: columns, bad entries, determinism."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from matgen.cli import app


@pytest.fixture(scope="module")
def predictor_dir(tmp_path_factory):
    from pymatgen.core import Lattice, Structure

    from matgen.surrogates import PredictorConfig, fit_predictor

    rng = np.random.default_rng(0)
    xs = [Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
          for a in rng.uniform(2.6, 3.4, 24)]
    p = fit_predictor(xs, "band_gap", PredictorConfig(n_members=2, hidden=(8,), epochs=5),
                      labels=[s.volume for s in xs])
    d = tmp_path_factory.mktemp("pred")
    p.save(d / "band_gap")
    return d


@pytest.fixture
def candidates(tmp_path, rock_salt, diamond_si):
    from ase.io import write
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    clash = Structure(Lattice.cubic(3.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    isolated = Structure(Lattice.cubic(15.0), ["Si", "Si"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    atoms = [AseAtomsAdaptor.get_atoms(s) for s in (rock_salt, clash, isolated, diamond_si)]
    for i, a in enumerate(atoms):
        a.info["sample_id"] = f"c{i}"
        a.info.update(material_id=f"mp-{i}", seed=7, sampler="fast")  # sampling metadata
    path = tmp_path / "cands.extxyz"
    write(path, atoms, format="extxyz")
    return path


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_score_cli_columns_bad_entries_and_determinism(candidates, predictor_dir, tmp_path):
    runner = CliRunner()
    args = ["score", "--in", str(candidates), "--device", "cpu", "--max-steps", "15",
            "--predictors", str(predictor_dir), "--seed", "3"]
    r1 = runner.invoke(app, [*args, "--out", str(tmp_path / "a.csv")])
    assert r1.exit_code == 1, r1.output  # one unreadable entry
    assert "Traceback" not in r1.output
    rows = _read(tmp_path / "a.csv")
    assert [r["sample_id"] for r in rows] == ["c0", "c1", "c2", "c3"]
    for col in ("formula", "energy_per_atom", "e_form_per_atom", "e_above_hull", "converged",
                "relax_steps", "max_force", "band_gap", "band_gap_std", "ood_score", "error"):
        assert col in rows[0]
    good, clash, iso, si = rows
    assert good["error"] == "" and si["error"] == ""
    assert float(good["energy_per_atom"]) < -3 and float(good["band_gap_std"]) > 0
    assert float(si["e_above_hull"]) == pytest.approx(
        float(si["e_form_per_atom"]), abs=1e-6)  # an element: hull is 0
    assert "apart" in clash["error"] and clash["energy_per_atom"] == ""
    assert "isolated" in iso["error"] and iso["energy_per_atom"] == ""
    # a column dictionary beside the CSV: units, and whose formation energy is whose
    with open(tmp_path / "a.columns.csv") as fh:
        doc = {r["column"]: r for r in csv.DictReader(fh)}
    assert list(doc) == list(rows[0])
    assert doc["e_above_hull"]["unit"] == "eV/atom"
    assert "sevennet" in doc["e_form_per_atom"]["meaning"] and "(MLIP)" in doc[
        "e_form_per_atom"]["meaning"]
    assert "predict" in doc["band_gap"]["meaning"] and doc["band_gap_std"]["unit"] == "eV"
    # progress without a terminal: plain lines on stderr
    assert "relax: 0/3 structures" in r1.output and "3/3 structures (100%), done" in r1.output
    r2 = runner.invoke(app, [*args, "--out", str(tmp_path / "b.csv"), "--no-progress",
                             "--relaxed-out", str(tmp_path / "relaxed.extxyz"),
                             "--cif-zip", str(tmp_path / "relaxed_cif.zip")])
    assert r2.exit_code == 1
    assert "relax:" not in r2.output
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    from ase.io import read

    frames = read(tmp_path / "relaxed.extxyz", index=":")
    assert [f.info["sample_id"] for f in frames] == ["c0", "c3"]  # the two scored structures
    for f, row in zip(frames, (good, si), strict=True):
        assert f.get_potential_energy() == pytest.approx(
            float(row["energy_per_atom"]) * len(f), abs=1e-4)
        assert f.info["material_id"] == row["sample_id"].replace("c", "mp-")
        assert f.info["seed"] == 7 and f.info["sampler"] == "fast"
    import zipfile

    with zipfile.ZipFile(tmp_path / "relaxed_cif.zip") as zf:
        assert zf.namelist() == ["c0.cif", "c3.cif"]
        assert "e_above_hull = " in zf.read("c0.cif").decode()
        assert f.info["e_above_hull"] == pytest.approx(float(row["e_above_hull"]), abs=1e-5)


def test_score_cli_no_relax_and_usage_errors(candidates, predictor_dir, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["score", "--in", str(tmp_path / "missing.extxyz"),
                            "--out", str(tmp_path / "x.csv")])
    assert r.exit_code == 2
    r = runner.invoke(app, ["score", "--in", str(candidates), "--out", str(tmp_path / "x.csv"),
                            "--device", "tpu"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["score", "--in", str(candidates), "--out", str(tmp_path / "n.csv"),
                            "--no-relax", "--device", "cpu", "--predictors", str(predictor_dir)])
    assert r.exit_code == 1
    rows = _read(tmp_path / "n.csv")
    assert rows[0]["relax_steps"] == "0" and rows[0]["energy_per_atom"] != ""


def test_cif_zip_beside_the_extxyz_reads_back(tmp_path, rock_salt, triclinic):
    import zipfile

    from pymatgen.core import Structure

    from matgen.cli._cifzip import write_cif_zip

    z = write_cif_zip(tmp_path / "x_cif.zip", [("a/1", rock_salt, ["e_above_hull = 0.01"]),
                                               ("a/1", triclinic, []), ("t", triclinic, [])])
    with zipfile.ZipFile(z) as zf:
        assert zf.namelist() == ["a_1.cif", "a_1_2.cif", "t.cif"]
        text = zf.read("a_1.cif").decode()
        assert text.startswith("# e_above_hull = 0.01\n") and "data_a_1" in text
        assert "Fm-3m" in text  # symmetrised
        s = Structure.from_str(text, fmt="cif")
        assert len(s.get_primitive_structure()) == 2
        assert Structure.from_str(zf.read("t.cif").decode(), fmt="cif").composition == \
            triclinic.composition

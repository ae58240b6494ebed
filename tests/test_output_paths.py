"""Output paths are checked before any work (issue 20, item 9): `score` and `evaluate` name a
folder, a path under a file, or an unwritable place in one line (exit 2) and compute nothing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from matgen.cli import app
from matgen.cli._paths import output_file_problem


@pytest.fixture()
def inputs(tmp_path):
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cif = tmp_path / "nacl.cif"
    cif.write_text(s.to(fmt="cif"))
    xyz = tmp_path / "gen.extxyz"
    from pymatgen.io.ase import AseAtomsAdaptor

    a = AseAtomsAdaptor.get_atoms(s)
    a.info = {"material_id": "m-0"}
    a.write(str(xyz), format="extxyz")
    ref = tmp_path / "ref.csv"
    ref.write_text(f'material_id,cif\nm-0,"{s.to(fmt="cif")}"\n')
    (tmp_path / "folder").mkdir()
    return cif, xyz, ref


@pytest.mark.parametrize(("out", "why"), [
    ("folder", "is a folder"),
    ("nacl.cif/x.csv", "is not a folder"),
])
def test_score_and_evaluate_check_outputs_first(tmp_path, inputs, out, why):
    cif, xyz, ref = inputs
    target = tmp_path / out
    runner = CliRunner()
    res = runner.invoke(app, ["score", "--in", str(cif), "--out", str(target), "--no-relax"])
    assert res.exit_code == 2 and why in res.output and "error: --out" in res.output, res.output
    assert res.output.count("\n") == 1
    res = runner.invoke(app, ["evaluate", "--task", "csp", "--generated", str(xyz),
                              "--reference", str(ref), "--out", str(target)])
    assert res.exit_code == 2 and why in res.output, res.output
    res = runner.invoke(app, ["evaluate", "--task", "csp", "--generated", str(xyz),
                              "--reference", str(ref), "--out", str(tmp_path / "m.json"),
                              "--per-structure", str(target)])
    assert res.exit_code == 2 and "--per-structure" in res.output and why in res.output
    assert not (tmp_path / "m.json").exists()  # nothing computed


def test_output_file_problem(tmp_path):
    assert output_file_problem(tmp_path / "new" / "deeper" / "x.csv", "--out") is None
    assert output_file_problem(tmp_path / "x.csv", "--out") is None
    assert "is not a folder" in output_file_problem(tmp_path.parent / "/dev/null/x", "--out")

"""`matgen evaluate` through typer's CliRunner."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from ase.io import write
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter
from typer.testing import CliRunner

from matgen.cli import app

runner = CliRunner()


@pytest.fixture
def files(tmp_path, tiny_structures, perturbed):
    ref_csv = tmp_path / "test.csv"
    pd.DataFrame(
        {
            "material_id": [f"m-{i}" for i in range(len(tiny_structures))],
            "cif": [str(CifWriter(s)) for s in tiny_structures],
            "band_gap": [1.0, 0.5, 2.0, 0.0],
        }
    ).to_csv(ref_csv, index=False)
    rng = np.random.default_rng(0)
    frames = []
    simple_cubic_si = Structure(Lattice.cubic(2.5), ["Si"], [[0, 0, 0]])
    for i, s in enumerate(tiny_structures):
        for j in range(2):  # k = 2 samples per reference; m-1's first is another Si crystal
            g = simple_cubic_si if (i == 1 and j == 0) else perturbed(s, 0.02, 0.0, rng)
            a = AseAtomsAdaptor.get_atoms(g)
            a.info = {"material_id": f"m-{i}", "band_gap": 1.0 + i}
            frames.append(a)
    gen = tmp_path / "gen.extxyz"
    write(gen, frames)
    return tmp_path, ref_csv, gen


def test_csp_cli_writes_metrics_and_per_structure(files):
    tmp, ref_csv, gen = files
    out, per = tmp / "metrics.json", tmp / "per.csv"
    r = runner.invoke(
        app,
        [
            "evaluate", "--task", "csp", "--generated", str(gen), "--reference", str(ref_csv),
            "--out", str(out), "--per-structure", str(per), "--workers", "1", "--no-progress",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())
    assert m["k"] == 2 and m["num_references"] == 4
    assert m["match_rate"] == 1.0 and 0 < m["rmse"] < 0.05
    rows = list(csv.DictReader(per.open()))
    assert len(rows) == 8 and {"material_id", "rms_dist", "valid", "matched"} <= set(rows[0])
    assert "match rate" in r.output
    # --k 1 keeps the first sample only: m-1's first sample is far off
    r = runner.invoke(
        app,
        [
            "evaluate", "--task", "csp", "--generated", str(gen), "--reference", str(ref_csv),
            "--out", str(out), "--per-structure", str(per), "--k", "1", "--no-progress",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["match_rate"] == pytest.approx(0.75)


def test_gen_cli(files):
    tmp, ref_csv, gen = files
    out = tmp / "gen.json"
    r = runner.invoke(
        app,
        [
            "evaluate", "--task", "gen", "--generated", str(gen), "--reference", str(ref_csv),
            "--train", str(ref_csv), "--out", str(out), "--no-coverage", "--property",
            "band_gap", "--workers", "1", "--no-progress",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())
    assert m["num_generated"] == 8 and m["valid"] == 1.0
    # the two samples of each reference are one crystal, except m-1's: 5 unique of 8
    assert m["num_unique"] == 5
    assert m["wdist_property"] is not None and m["novelty"] is not None
    assert (tmp / "gen.gen_per_structure.csv").exists()


def test_bad_inputs_exit_1_without_traceback(files, tmp_path):
    _, ref_csv, gen = files
    r = runner.invoke(app, ["evaluate", "--task", "csp", "--generated", str(tmp_path / "nope"),
                            "--reference", str(ref_csv)])  # fmt: skip
    assert r.exit_code == 1 and "file not found" in r.output and "Traceback" not in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    r = runner.invoke(app, ["evaluate", "--task", "csp", "--generated", str(gen),
                            "--reference", str(bad)])  # fmt: skip
    assert r.exit_code == 1 and "no 'cif' column" in r.output
    # frames without material_id cannot be paired for CSP
    noid = tmp_path / "noid.extxyz"
    from ase.io import read

    frames = read(gen, index=":")
    for a in frames:
        a.info = {}
    write(noid, frames)
    r = runner.invoke(app, ["evaluate", "--task", "csp", "--generated", str(noid),
                            "--reference", str(ref_csv)])  # fmt: skip
    assert r.exit_code == 1 and "material_id" in r.output
    r = runner.invoke(app, ["evaluate", "--task", "nope", "--generated", str(gen),
                            "--reference", str(ref_csv)])  # fmt: skip
    assert r.exit_code == 2


def _with_garbage_cif(ref_csv, row: int):
    """A copy of the reference CSV whose row ``row`` has a CIF that does not parse."""
    df = pd.read_csv(ref_csv)
    df.loc[row, "cif"] = "garbage"
    bad_ref = ref_csv.with_name(f"bad_ref_{row}.csv")
    df.to_csv(bad_ref, index=False)
    return bad_ref


def test_an_unparsable_reference_is_named_and_exits_1_after_the_metrics(files):
    """A reference row whose CIF does not parse counts as unmatched (the metric's convention),
    the metrics are written, the row is named in one line, and the exit code is 1 (bad data)."""
    tmp, ref_csv, gen = files
    bad_ref, out = _with_garbage_cif(ref_csv, 2), tmp / "m.json"
    r = runner.invoke(app, ["evaluate", "--task", "csp", "--generated", str(gen), "--reference",
                            str(bad_ref), "--out", str(out), "--workers", "1", "--no-progress"])
    assert r.exit_code == 1, r.output
    assert "m-2: CIF does not parse" in r.output and "Traceback" not in r.output
    m = json.loads(out.read_text())
    assert m["num_references_unparsable"] == 1 and m["unparsable_reference_ids"] == ["m-2"]
    assert m["match_rate"] == pytest.approx(0.75)


def test_gen_with_an_unparsable_reference_names_it_and_exits_1(files):
    tmp, ref_csv, gen = files
    bad_ref, out = _with_garbage_cif(ref_csv, 0), tmp / "g.json"
    r = runner.invoke(app, ["evaluate", "--task", "gen", "--generated", str(gen), "--reference",
                            str(bad_ref), "--out", str(out), "--workers", "1", "--no-progress",
                            "--dataset", "mp20"])
    assert r.exit_code == 1, r.output
    assert "m-0: CIF does not parse (left out of the reference distributions)" in r.output
    assert json.loads(out.read_text())["unparsable_reference_ids"] == ["m-0"]

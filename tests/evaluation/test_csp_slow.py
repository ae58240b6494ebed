"""Slow: `matgen evaluate --task csp` on 300 MP-20 pairs equals a direct DiffCSP-style loop."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from ase.io import read, write
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from typer.testing import CliRunner

from matgen.cli import app
from matgen.evaluation import smact_validity, structure_validity


@pytest.mark.slow
def test_cli_equals_direct_loop_on_mp20(datasets_dir, tmp_path, perturbed):
    n = 300
    df = pd.read_csv(datasets_dir / "mp20_reduced" / "test.csv").iloc[:n]
    ref_csv = tmp_path / "ref.csv"
    df.to_csv(ref_csv, index=False)
    refs = [Structure.from_str(c, fmt="cif") for c in df["cif"]]
    rng = np.random.default_rng(11)
    frames = []
    for mid, s in zip(df["material_id"], refs, strict=True):
        sigma = rng.choice([0.02, 0.1, 0.4])
        a = AseAtomsAdaptor.get_atoms(perturbed(s, sigma, sigma / 5, rng))
        a.info = {"material_id": mid}
        frames.append(a)
    gen = tmp_path / "gen.extxyz"
    write(gen, frames)
    out = tmp_path / "m.json"
    r = CliRunner().invoke(
        app,
        ["evaluate", "--task", "csp", "--generated", str(gen), "--reference", str(ref_csv),
         "--out", str(out), "--workers", "2", "--no-progress"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())

    # the published loop: structures rebuilt from lengths/angles, both sides must be valid (k=1)
    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)

    def crystal(s):
        lat = Lattice.from_parameters(*s.lattice.abc, *s.lattice.angles)
        c = Structure(lat, s.species, s.frac_coords)
        return c, smact_validity(c.composition) and structure_validity(c)

    rms = []
    for a, ref in zip(read(gen, index=":"), refs, strict=True):
        p, pv = crystal(AseAtomsAdaptor.get_structure(a))
        g, gv = crystal(ref)
        d = matcher.get_rms_dist(p, g) if (pv and gv) else None
        rms.append(None if d is None else d[0])
    hits = [x for x in rms if x is not None]
    assert m["match_rate"] == pytest.approx(len(hits) / n, abs=1e-12)
    assert m["rmse"] == pytest.approx(float(np.mean(hits)), rel=1e-6)

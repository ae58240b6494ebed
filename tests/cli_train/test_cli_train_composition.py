"""`matgen train-composition`: trains on a folder's train split, selects on its val split, and
writes the pair of files `matgen sample --denovo composition` reads."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from matgen.cli import app


def _folder(tmp_path, tiny_structures):
    from pymatgen.io.cif import CifWriter

    rows = [{"material_id": f"m-{i}", "cif": str(CifWriter(s)), "band_gap": 0.5 * i}
            for i, s in enumerate(tiny_structures)]
    d = tmp_path / "data"
    d.mkdir()
    pd.DataFrame(rows).to_csv(d / "train.csv", index=False)
    pd.DataFrame(rows[:2]).to_csv(d / "val.csv", index=False)
    return d


def test_trains_and_writes_the_pair(tmp_path, tiny_structures, monkeypatch):
    monkeypatch.setenv("MATGEN_CACHE_DIR", str(tmp_path / "cache"))
    d = _folder(tmp_path, tiny_structures)
    out = tmp_path / "ckpt"
    res = CliRunner().invoke(app, ["train-composition", "--data", str(d), "--out", str(out),
                                   "--epochs", "3", "--temperature", "0.9", "--make-default"])
    assert res.exit_code == 0, res.output
    assert "composition model (best epoch" in res.output
    meta = json.loads((out / "composition.json").read_text())
    assert meta["config"]["conditions"] == ["band_gap"]
    assert meta["sampling"] == {"denovo": "composition", "temperature": 0.9}
    assert len(meta["record"]["curve"]) == 3 and meta["record"]["train_crystals"] == 4
    assert (out / "composition.safetensors").stat().st_size > 0


def test_bad_usage_is_exit_2_one_line(tmp_path, tiny_structures, monkeypatch):
    monkeypatch.setenv("MATGEN_CACHE_DIR", str(tmp_path / "cache"))
    d = _folder(tmp_path, tiny_structures)
    res = CliRunner().invoke(app, ["train-composition", "--data", str(d), "--out",
                                   str(tmp_path / "o"), "--condition", "bulk_modulus"])
    assert res.exit_code == 2 and "--condition bulk_modulus: not a property column" in res.output
    res = CliRunner().invoke(app, ["train-composition", "--data", str(tmp_path / "nowhere"),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--data" in res.output and "Traceback" not in res.output


def test_trains_an_ensemble_in_float16(tmp_path, tiny_structures, monkeypatch):
    monkeypatch.setenv("MATGEN_CACHE_DIR", str(tmp_path / "cache"))
    d = _folder(tmp_path, tiny_structures)
    out = tmp_path / "ckpt"
    res = CliRunner().invoke(app, ["train-composition", "--data", str(d), "--out", str(out),
                                   "--epochs", "2", "--members", "2", "--hidden", "32",
                                   "--float16", "--dropout", "0.5", "--weight-decay", "0.1",
                                   "--patience", "3"])
    assert res.exit_code == 0, res.output
    assert "2 networks, best epochs" in res.output
    meta = json.loads((out / "composition.json").read_text())
    assert meta["config"]["members"] == 2 and meta["config"]["hidden"] == 32
    assert meta["config"]["dropout"] == 0.5
    assert meta["record"]["train_config"]["weight_decay"] == 0.1
    assert meta["record"]["train_config"]["patience"] == 3
    assert meta["weights_dtype"] == "float16" and len(meta["record"]["members"]) == 2

    from matgen.models import CompositionEnsemble, load_composition_model

    assert isinstance(load_composition_model(out), CompositionEnsemble)

"""`matgen sample` and `matgen train` given what a hostile new user types (issue 20, items 9,
12, 13): each is one line naming the option, file or key, exit 2 (usage) or 1 (data), never a
traceback, and nothing is computed first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from matgen.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _one_line_error(res, code: int, *words: str) -> None:
    out = res.output
    assert res.exit_code == code, out
    assert "Traceback" not in out and out.startswith("error: "), out
    assert out.strip().count("\n") == 0, out
    assert all(w in out for w in words), out


@pytest.mark.parametrize(("args", "words"), [
    (["--guidance", "nan"], ["--guidance", "finite"]),
    (["--guidance", "inf"], ["--guidance", "finite"]),
    (["--guidance", "-1"], ["--guidance", ">= 0"]),
    (["--chemsys", ""], ["--chemsys", "empty"]),
    (["--chemsys", " - "], ["--chemsys", "empty"]),
    (["--chemsys", "Li-Xx-O"], ["--chemsys", "unknown element 'Xx'"]),
    (["--condition", "band_gap=1e999"], ["band_gap=1e999", "finite"]),
    (["--flow-slope", "nan"], ["--flow-slope"]),
    (["--clash-scale", "1.5"], ["--clash-scale", "[0, 1]"]),
    (["--clash-scale", "nan"], ["--clash-scale", "[0, 1]"]),
    (["--clash-floor", "3"], ["--clash-floor", "[0, 2]"]),
    (["--type-order", "greedy"], ["--type-order", "random or confidence", "'greedy'"]),
    (["--type-remask", "-1"], ["--type-remask", ">= 0"]),
])
def test_sample_option_errors_before_loading_anything(tmp_path, args, words):
    out = tmp_path / "x.extxyz"
    res = runner.invoke(app, ["sample", "--out", str(out), "--no-progress", *args])
    _one_line_error(res, 2, *words)
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize(("formula", "words"), [
    ("Na0Cl", ["'Na0Cl'", "Na with count 0"]),
    ("(NaCl)0", ["Na, Cl with count 0"]),
    ("Na1000Cl1000", ["2000 atoms per cell", "limit of 500"]),
    ("Na1e30Cl", ["atoms per cell"]),
    ("NaCl0.5", ["not a whole number"]),
    ("Xy2O", ["unknown element"]),
])
def test_sample_refuses_bad_formulas(tmp_path, formula, words):
    out = tmp_path / "x.extxyz"
    res = runner.invoke(app, ["sample", "--out", str(out), "--no-progress", "--task", "csp",
                              "--composition", formula, "--steps", "1", "--sampler", "fast"])
    _one_line_error(res, 2, *words)
    assert not out.exists()


def test_sample_refuses_formula_units_beyond_the_cell_limit(tmp_path):
    res = runner.invoke(app, ["sample", "--out", str(tmp_path / "x.extxyz"), "--no-progress",
                              "--composition", "NaCl", "--formula-units", "1000"])
    _one_line_error(res, 2, "x 1000 formula units", "2000 atoms per cell")


@pytest.mark.parametrize(("out", "why"), [("folder.extxyz", "is a folder"),
                                          ("file.txt/x.extxyz", "is not a folder")])
def test_sample_checks_its_output_path_first(tmp_path, out, why):
    (tmp_path / "folder.extxyz").mkdir()
    (tmp_path / "file.txt").write_text("x")
    res = runner.invoke(app, ["sample", "--out", str(tmp_path / out), "--no-progress"])
    _one_line_error(res, 2, "--out", why)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("cmd", ["sample", "train"])
def test_device_cuda_without_cuda_is_one_line(tmp_path, cmd):
    args = (["sample", "--out", str(tmp_path / "x.extxyz")] if cmd == "sample" else
            ["train", "--config", str(REPO / "configs/train/tiny.yaml"),
             "--out", str(tmp_path / "run")])
    res = runner.invoke(app, [*args, "--device", "cuda", "--no-progress"])
    _one_line_error(res, 2, "--device cuda", "CUDA is not available")


@pytest.mark.parametrize(("text", "code", "words"), [
    ("batch_size: [1\n", 2, ["not valid YAML at line 2"]),
    ("", 2, ["the config is empty"]),
    ("model:\n  hiden: 3\n", 2, ["model.hiden"]),
    ("batch_size: abc\n", 2, ["batch_size", "'abc'"]),
    ("data:\n  dataset: /nonexistent/x.csv\n", 1, ["data.dataset", "/nonexistent/x.csv"]),
    ("data:\n  dataset: perov5\n  train_split: nosuch\n", 1, ["nosuch"]),
    ("optim:\n  schedule: time\n", 2, ["optim.schedule: time", "--max-time"]),
])
def test_train_config_errors(tmp_path, text, code, words):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    res = runner.invoke(app, ["train", "--config", str(p), "--out", str(tmp_path / "run"),
                              "--no-progress"])
    _one_line_error(res, code, *words)
    assert not (tmp_path / "run").exists()


def test_train_on_a_file_with_no_good_rows_is_a_data_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("material_id,cif\nx,garbage\ny,\n")
    res = runner.invoke(app, ["train", "--config", str(REPO / "configs/train/tiny.yaml"),
                              "--data", str(bad), "--out", str(tmp_path / "run"),
                              "--no-progress"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: data (--data ") and "no usable crystals" in last


@pytest.mark.parametrize(("extra", "args", "code", "words"), [
    ({"distill": {"teacher": "/nonexistent/teacher"}}, [], 2,
     ["error: distill.teacher /nonexistent/teacher: not found"]),
    ({}, ["--init", "{tmp}"], 2, ["no checkpoint", "found at"]),
    ({"conditions": {"properties": ["nosuchcol"]}}, [], 1,
     ["error: data (--data ", "'nosuchcol' is not a column"]),
])
def test_train_errors_name_their_source(tmp_path, extra, args, code, words):
    """A missing teacher or --init checkpoint is a usage error, not blamed on the data."""
    import yaml

    cfg = yaml.safe_load((REPO / "configs/train/tiny.yaml").read_text())
    cfg.update(extra)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    data = tmp_path / "d.csv"
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    data.write_text(f'material_id,cif,band_gap\nm-0,"{s.to(fmt="cif")}",1.0\n')
    res = runner.invoke(app, ["train", "--config", str(p), "--data", str(data), "--out",
                              str(tmp_path / "run"), "--no-progress", "--max-steps", "1",
                              *[a.format(tmp=tmp_path) for a in args]])
    assert res.exit_code == code and "Traceback" not in res.output, res.output
    last = res.output.strip().splitlines()[-1]
    assert all(w in last for w in words), res.output


@pytest.mark.parametrize(("third", "code"), [("garbage", 1), ("supercell", 0)])
def test_train_skips_a_bad_row_trains_on_the_rest_and_exits_1(tmp_path, third, code):
    """A row that is not a crystal is bad data: the run trains on the good rows, keeps its
    checkpoint and exits 1 saying so; a crystal over data.max_atoms is a filter the config
    chose, and the run exits 0."""
    import yaml
    from pymatgen.core import Lattice, Structure

    cfg = yaml.safe_load((REPO / "configs/train/tiny.yaml").read_text())
    cfg["data"]["max_atoms"] = 4
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    nacl = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    kcl = Structure(Lattice.cubic(6.3), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    big = nacl * (2, 2, 2)  # 16 atoms > max_atoms 4
    rows = [nacl.to(fmt="cif"), kcl.to(fmt="cif"),
            "garbage" if third == "garbage" else big.to(fmt="cif")]
    data = tmp_path / "d.csv"
    data.write_text("material_id,cif\n" + "".join(f'm-{i},"{c}"\n' for i, c in enumerate(rows)))
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "--config", str(p), "--data", str(data), "--out",
                              str(run), "--no-progress", "--max-steps", "2"])
    assert res.exit_code == code and "Traceback" not in res.output, res.output
    assert any((run / "checkpoints").glob("step_*")), "the run's checkpoint is kept"
    last = res.output.strip().splitlines()[-1]
    if code == 1:
        assert last.startswith("error: data (--data ") and "1 unusable training entry" in last
    else:
        assert "error" not in res.output, res.output

"""`matgen train` + `matgen sample` end to end (typer CliRunner) on a tiny CSV made in code."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from matgen.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _structures():
    from pymatgen.core import Lattice, Structure

    out = []
    for i, a in enumerate((5.5, 5.64, 5.8, 5.9)):
        out.append(
            Structure.from_spacegroup(
                "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
            ).get_primitive_structure()
        )
        out.append(
            Structure(
                Lattice.cubic(3.9 + 0.05 * i),
                ["Sr", "Ti", "O", "O", "O"],
                [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
            )
        )
    return out


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    p = d / "tiny.csv"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["material_id", "cif", "band_gap", "energy", "formula"])
        for i, s in enumerate(_structures()):
            w.writerow(
                [f"m-{i}", s.to(fmt="cif"), 0.5 * i, -0.1 * i, s.composition.reduced_formula]
            )
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_csv):
    """A tiny conditioned model trained for a few steps through the CLI."""
    import os

    d = tmp_path_factory.mktemp("run")
    os.environ["MATGEN_CACHE_DIR"] = str(d / "cache")
    cfg = yaml.safe_load((REPO / "configs/train/tiny.yaml").read_text())
    cfg["conditions"] = {"properties": ["band_gap"], "drop_prob": 0.2}
    cfg["batch_size"] = 4
    cfg["checkpoint_every"] = 2
    cfg_path = d / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    run = d / "run"
    r = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(cfg_path),
            "--data",
            str(tiny_csv),
            "--out",
            str(run),
            "--max-steps",
            "3",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "step 3" in r.output
    return run, cfg_path


def _frames(path: Path):
    from ase.io import read

    return read(str(path), index=":", format="extxyz")


def test_train_writes_run_dir(trained):
    run, _ = trained
    ck = run / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["last", "step_2", "step_3"]
    meta = json.loads((ck / "last" / "model.json").read_text())
    assert meta["denoiser"]["conditions"][0]["name"] == "band_gap"
    assert meta["metadata"]["step"] == 3
    assert meta["metadata"]["dataset_stats"]["num_atoms_hist"] == {"2": 4, "5": 4}
    rows = list(csv.DictReader(open(run / "metrics.csv")))  # noqa: SIM115
    assert rows[-1]["step"] == "3"


def test_resume_and_existing_run_dir(trained, tiny_csv, tmp_path):
    import shutil

    src, cfg_path = trained
    run = tmp_path / "copy"
    shutil.copytree(src, run)
    base = [
        "train",
        "--config",
        str(cfg_path),
        "--data",
        str(tiny_csv),
        "--out",
        str(run),
        "--no-progress",
    ]
    r = runner.invoke(app, [*base, "--max-steps", "3"])
    assert r.exit_code == 2 and "--resume" in r.output
    r = runner.invoke(app, [*base, "--max-steps", "4", "--resume"])
    assert r.exit_code == 0, r.output
    assert "step 4 (from 3)" in r.output
    assert (run / "checkpoints" / "step_4" / "model.safetensors").is_file()


def test_init_fine_tunes_with_a_new_condition(trained, tiny_csv, tmp_path):
    run, cfg_path = trained
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["conditions"]["properties"] = ["band_gap", "energy"]
    new_cfg = tmp_path / "ft.yaml"
    new_cfg.write_text(yaml.safe_dump(cfg))
    r = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(new_cfg),
            "--data",
            str(tiny_csv),
            "--out",
            str(tmp_path / "ft"),
            "--max-steps",
            "1",
            "--no-progress",
            "--init",
            str(run / "checkpoints" / "last"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "initialised from" in r.output
    meta = json.loads((tmp_path / "ft" / "checkpoints" / "last" / "model.json").read_text())
    assert [c["name"] for c in meta["denoiser"]["conditions"]] == ["band_gap", "energy"]


def test_sample_de_novo_conditioned(trained, tmp_path):
    run, _ = trained
    out = tmp_path / "gen.extxyz"
    r = runner.invoke(
        app,
        [
            "sample",
            "--checkpoint",
            str(run / "checkpoints" / "last"),
            "--num",
            "3",
            "--out",
            str(out),
            "--steps",
            "2",
            "--seed",
            "7",
            "--condition",
            "band_gap=1:2",
            "--guidance",
            "1.5",
            "--batch-size",
            "2",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    assert not out.with_name(out.name + ".partial").exists()
    frames = _frames(out)
    assert len(frames) == 3
    for i, a in enumerate(frames):
        assert a.info["sample_id"].endswith(f"-s7-{i}")
        assert a.info["seed"] == 7 and a.info["task"] == "gen"
        assert len(a.info["checkpoint"]) == 12
        assert a.info["conditions"] == "band_gap=1:2"
        assert 1.0 <= a.info["target_band_gap"] <= 2.0
        assert len(a) in (2, 5)  # atom counts drawn from the training histogram
        assert all(a.pbc)
    # a chemical system restricts de novo atom types
    out2 = tmp_path / "chemsys.extxyz"
    r = runner.invoke(
        app,
        [
            "sample",
            "--checkpoint",
            str(run),
            "--num",
            "4",
            "--out",
            str(out2),
            "--steps",
            "2",
            "--chemsys",
            "Na-Cl",
            "--sampler",
            "fast",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    frames = _frames(out2)
    assert len(frames) == 4
    assert all(set(a.get_chemical_symbols()) <= {"Na", "Cl"} for a in frames)
    assert all(a.info["chemsys"] == "Na-Cl" for a in frames)


def test_sample_csp_from_csv_carries_material_id(trained, tiny_csv, tmp_path):
    run, _ = trained
    out = tmp_path / "csp.extxyz"
    r = runner.invoke(
        app,
        [
            "sample",
            "--checkpoint",
            str(run),
            "--num",
            "2",
            "--compositions-from",
            str(tiny_csv),
            "--out",
            str(out),
            "--steps",
            "2",
            "--sampler",
            "fast",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    frames = _frames(out)
    assert len(frames) == 16
    assert [a.info["material_id"] for a in frames[:4]] == ["m-0", "m-0", "m-1", "m-1"]
    assert frames[0].get_chemical_formula() == "ClNa"
    assert frames[2].info["composition"] == "SrTiO3" and len(frames[2]) == 5


def test_sample_csp_formula_units_and_errors(trained, tmp_path):
    run, _ = trained
    ck = str(run / "checkpoints" / "last")
    out = tmp_path / "f.extxyz"
    r = runner.invoke(
        app,
        [
            "sample",
            "--checkpoint",
            ck,
            "--composition",
            "NaCl",
            "--formula-units",
            "2",
            "--num",
            "1",
            "--out",
            str(out),
            "--steps",
            "1",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    (a,) = _frames(out)
    assert len(a) == 4 and a.info["composition"] == "Na2Cl2"
    out2 = tmp_path / "several.extxyz"  # `--composition FORMULA ...` (several after one flag)
    r = runner.invoke(
        app,
        [
            "sample",
            "--checkpoint",
            ck,
            "--composition",
            "NaCl",
            "SrTiO3",
            "--num",
            "1",
            "--out",
            str(out2),
            "--steps",
            "1",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    assert [a.info["composition"] for a in _frames(out2)] == ["NaCl", "SrTiO3"]
    r = runner.invoke(
        app, ["sample", "--checkpoint", ck, "--out", str(out), "NaCl", "--no-progress"]
    )
    assert r.exit_code == 2 and "unexpected argument" in r.output
    r = runner.invoke(
        app,
        [
            "sample",
            "--checkpoint",
            ck,
            "--out",
            str(out),
            "--condition",
            "e_above_hull=0.1",
            "--no-progress",
        ],
    )
    assert r.exit_code == 2 and "trained on" in r.output
    r = runner.invoke(
        app,
        [
            "sample",
            "--checkpoint",
            ck,
            "--out",
            str(out),
            "--condition",
            "band_gap=abc",
            "--no-progress",
        ],
    )
    assert r.exit_code == 2 and "bad condition" in r.output
    r = runner.invoke(
        app, ["sample", "--checkpoint", ck, "--out", str(out), "--task", "csp", "--no-progress"]
    )
    assert r.exit_code == 2


def test_sample_without_default_model_is_a_clear_error(tmp_path, monkeypatch):
    import matgen.generate._checkpoints as s

    monkeypatch.setattr(s, "DEFAULT_MODEL_DIR", tmp_path / "nope")
    r = runner.invoke(
        app, ["sample", "--num", "1", "--out", str(tmp_path / "x.extxyz"), "--no-progress"]
    )
    assert r.exit_code == 2 and "no default model" in r.output


def test_bad_config_is_a_usage_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("batch_size: -3\nnot_a_key: 1\n")
    r = runner.invoke(app, ["train", "--config", str(p), "--out", str(tmp_path / "r")])
    assert r.exit_code == 2
    assert "batch_size" in r.output and "not_a_key" in r.output


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_real_model(tiny_csv, tmp_path):
    """`torchrun --nproc_per_node=2 --no-python matgen train ...` with the real denoiser."""
    import os
    import shutil
    import subprocess
    import sys

    exe = shutil.which("matgen", path=str(Path(sys.executable).parent))
    assert exe is not None
    env = dict(os.environ, OMP_NUM_THREADS="1", MATGEN_CACHE_DIR=str(tmp_path / "cache"))
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "--no-python", exe, "train", "--config", str(REPO / "configs/train/tiny.yaml"),
            "--data", str(tiny_csv), "--out", str(tmp_path / "run"), "--no-progress"]
    for extra in (["--max-steps", "2"], ["--max-steps", "4", "--resume"]):
        p = subprocess.run([*base, *extra], check=False, env=env, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
    assert "step 4 (from 2)" in p.stdout
    assert (tmp_path / "run" / "checkpoints" / "step_4" / "model.safetensors").is_file()


def test_consistency_distillation_train_and_sample(trained, tiny_csv, tmp_path):
    """`matgen train` with a `distill` section makes a student from the teacher's weights;
    `matgen sample` picks the consistency sampler for it and refuses it for a plain model."""
    run, cfg_path = trained
    teacher = run / "checkpoints" / "last"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["distill"] = {"teacher": str(teacher), "intervals": 4}
    dcfg = tmp_path / "distill.yaml"
    dcfg.write_text(yaml.safe_dump(cfg))
    student = tmp_path / "student"
    r = runner.invoke(app, ["train", "--config", str(dcfg), "--data", str(tiny_csv), "--out",
                            str(student), "--max-steps", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "initialised from" in r.output and "consistency distillation" in r.output
    meta = json.loads((student / "checkpoints" / "last" / "model.json").read_text())["metadata"]
    assert meta["distill"]["intervals"] == 4 and meta["distill"]["sampler"] == "consistency"
    tmeta = json.loads((teacher / "model.json").read_text())["metadata"]
    assert meta["stats"] == tmeta["stats"] and meta["diffusion"] == tmeta["diffusion"]
    rows = list(csv.DictReader(open(student / "metrics.csv")))  # noqa: SIM115
    assert all(float(row["loss"]) >= 0 for row in rows)

    for steps in ("1", "2"):
        out = tmp_path / f"c{steps}.extxyz"
        r = runner.invoke(app, ["sample", "--checkpoint", str(student / "checkpoints" / "last"),
                                "--num", "3", "--steps", steps, "--out", str(out),
                                "--no-progress", "--condition", "band_gap=1.0",
                                "--guidance", "2"])
        assert r.exit_code == 0, r.output
        frames = _frames(out)
        assert len(frames) == 3
        assert {f.info["sampler"] for f in frames} == {"consistency"}
        assert {int(f.info["steps"]) for f in frames} == {int(steps)}
        assert all(len(f) > 0 and f.get_volume() > 0 for f in frames)
    r = runner.invoke(app, ["sample", "--checkpoint", str(student / "checkpoints" / "last"),
                            "--composition", "NaCl", "--out", str(tmp_path / "csp.extxyz"),
                            "--no-progress"])
    assert r.exit_code == 0, r.output
    assert [a.symbol for a in _frames(tmp_path / "csp.extxyz")[0]] == ["Na", "Cl"]

    r = runner.invoke(app, ["sample", "--checkpoint", str(teacher), "--sampler", "consistency",
                            "--out", str(tmp_path / "bad.extxyz"), "--no-progress"])
    assert r.exit_code == 2 and "consistency-distilled" in r.output
    cfg["diffusion"] = {"sigma_max": 0.9}
    dcfg.write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["train", "--config", str(dcfg), "--data", str(tiny_csv), "--out",
                            str(tmp_path / "s2"), "--max-steps", "1", "--no-progress"])
    assert r.exit_code == 2 and "sigma_max" in r.output


def test_cpu_default_sampler_is_fast_and_says_so(trained, tmp_path):
    run, _ = trained
    ck = str(run / "checkpoints" / "last")
    out = tmp_path / "d.extxyz"
    r = runner.invoke(app, ["sample", "--checkpoint", ck, "--num", "2", "--out", str(out),
                            "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "default sampler is fast" in r.output
    assert {(f.info["sampler"], int(f.info["steps"])) for f in _frames(out)} == {("fast", 50)}
    # an explicit step count keeps the predictor-corrector
    r = runner.invoke(app, ["sample", "--checkpoint", ck, "--num", "2", "--steps", "3", "--out",
                            str(out), "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert {(f.info["sampler"], int(f.info["steps"])) for f in _frames(out)} == {("pc", 3)}


def test_sample_cif_out_is_a_multi_block_cif_pymatgen_reads(trained, tmp_path):
    """`--out x.cif` writes CIF (one data block per crystal, metadata as comments)."""
    from pymatgen.io.cif import CifParser

    run, _ = trained
    out = tmp_path / "gen.cif"
    r = runner.invoke(app, ["sample", "--checkpoint", str(run / "checkpoints" / "last"),
                            "--num", "3", "--out", str(out), "--steps", "2", "--seed", "7",
                            "--batch-size", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert not out.with_name(out.name + ".partial").exists()
    text = out.read_text()
    blocks = [ln[5:] for ln in text.splitlines() if ln.startswith("data_")]
    assert len(blocks) == 3 and all(b.endswith(f"-s7-{i}") for i, b in enumerate(blocks))
    assert "# checkpoint = " in text and "# seed = 7" in text
    structs = CifParser.from_str(text).parse_structures(primitive=False, on_error="raise")
    assert len(structs) == 3 and all(len(s) in (2, 5) for s in structs)


def test_sample_refuses_an_unknown_output_format_in_one_line(tmp_path):
    r = runner.invoke(app, ["sample", "--num", "1", "--out", str(tmp_path / "gen.json")])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown output format '.json'" in lines[0]
    assert ".cif" in lines[0] and not (tmp_path / "gen.json").exists()


def test_sample_csp_skips_a_bad_row_samples_the_rest_and_exits_1(trained, tmp_path):
    """A CSV with one unusable formula: that row is named in one line, the good rows are
    written, and the exit code says the input had bad data (1), as `matgen score` does."""
    run, _ = trained
    comps = tmp_path / "comps.csv"
    comps.write_text("material_id,formula\na,NaCl\nb,Xx2O\nc,SrTiO3\n")
    out = tmp_path / "csp.extxyz"
    r = runner.invoke(app, ["sample", "--checkpoint", str(run), "--compositions-from", str(comps),
                            "--num", "1", "--out", str(out), "--steps", "1", "--sampler", "fast",
                            "--no-progress"])
    assert r.exit_code == 1, r.output
    assert "row 2 (b)" in r.output and "Xx2O" in r.output and "Traceback" not in r.output
    assert "skipped 1 input rows" in r.output
    assert [a.info["material_id"] for a in _frames(out)] == ["a", "c"]

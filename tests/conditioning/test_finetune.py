"""Adding a condition by config and fine-tuning with ``--init`` (zero-initialised adapter)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml
from _cond_data import REPO, tiny_config
from typer.testing import CliRunner

from matgen.cli import app
from matgen.data import load_dataset
from matgen.generate import resolve_checkpoint
from matgen.models import load_checkpoint
from matgen.testing import random_crystals
from matgen.training import (
    TrainConfig,
    build_components,
    dataset_stats,
    load_init_weights,
    read_weights,
)
from matgen.training._loop import inherited_conditions

NEW = "hardness"


def _ft_config(tmp: Path) -> tuple[Path, TrainConfig]:
    path = tmp / "ft.yaml"
    path.write_text(yaml.safe_dump(tiny_config(["band_gap", NEW])))
    return path, TrainConfig.from_yaml(path)


def _step0_model(cfg: TrainConfig, csv_path: Path, init: Path):
    """What ``train(cfg, init=...)`` builds before its first step (the checkpoint's conditions
    inherited, then the config's)."""
    inherited, _ = inherited_conditions(init)
    old = [s.name for s in inherited]
    names = old + [n for n in cfg.conditions.names if n not in old]
    stats = dataset_stats(load_dataset(csv_path, max_atoms=cfg.data.max_atoms), names,
                          optional=set(old))
    torch.manual_seed(cfg.seed)
    model, _ = build_components(cfg, stats, inherited)
    missing, skipped = load_init_weights(model, init)
    return model.eval(), missing, skipped


def test_finetune_adds_zero_initialised_condition(cond_workdir, tiny_csv, pretrained):
    cfg_path, cfg = _ft_config(cond_workdir)
    pre, _ = load_checkpoint(pretrained)
    ft, missing, skipped = _step0_model(cfg, tiny_csv, pretrained)

    # (a) every tensor of the pretrained model is loaded; only the new condition's are fresh
    assert skipped == []
    assert missing and all(k.startswith(("cond.value.hardness.", "cond.null.hardness"))
                           for k in missing)
    assert {k.split(".")[2] for k in missing} == {NEW}
    ft_state = ft.state_dict()
    for k, v in read_weights(resolve_checkpoint(pretrained)).items():
        assert torch.equal(ft_state[k], v), k
    assert any(v.abs().sum() > 0 for k, v in ft_state.items() if k.startswith("cond.null.band"))

    # (b) the new branch adds exactly zero: outputs equal the pretrained model's
    batch = random_crystals([2, 3, 4], torch.Generator().manual_seed(1), dtype=torch.float32)
    t = torch.tensor([0.1, 0.5, 0.9])
    nan = torch.full((3,), float("nan"))
    bg = torch.tensor([0.3, 1.7, 4.0])
    cases = [
        ({"band_gap": bg}, {"band_gap": bg, NEW: torch.tensor([10.0, 60.0, 400.0])}),
        ({"band_gap": bg}, {"band_gap": bg}),
        ({"band_gap": nan}, {"band_gap": nan, NEW: nan}),
        (None, None),
    ]
    with torch.no_grad():
        for c_pre, c_ft in cases:
            a, b = pre(batch, t, c_pre), ft(batch, t, c_ft)
            assert torch.equal(a.coord, b.coord)
            assert torch.equal(a.lattice, b.lattice)
            assert torch.equal(a.type_logits, b.type_logits)
        # the band-gap condition itself matters (so the equality above is not vacuous)
        assert not torch.equal(pre(batch, t, {"band_gap": bg}).coord, pre(batch, t, None).coord)

    # (c) a few fine-tuning steps through the CLI: finite loss, the adapter starts learning
    run = cond_workdir / "ft"
    r = CliRunner().invoke(
        app,
        ["train", "--config", str(cfg_path), "--data", str(tiny_csv), "--init", str(pretrained),
         "--out", str(run), "--max-steps", "3", "--no-progress", "--device", "cpu"],
    )
    assert r.exit_code == 0, r.output
    assert "initialised from" in r.output
    with open(run / "metrics.csv") as fh:
        losses = [float(row["loss"]) for row in csv.DictReader(fh)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    tuned, meta = load_checkpoint(run / "checkpoints" / "last")
    assert [c.name for c in tuned.cfg.conditions] == ["band_gap", NEW]
    assert set(meta["conditions"]) == {"band_gap", NEW}
    last = tuned.cond.value[NEW][-1]
    assert last.weight.abs().sum() > 0  # the zero-initialised layer receives gradient


def test_shipped_finetune_config_adds_bulk_modulus():
    """configs/train/finetune_bulk_modulus.yaml: valid, the AFLOW column, the CPU model."""
    cfg = TrainConfig.from_yaml(REPO / "configs/train/finetune_bulk_modulus.yaml")
    cpu = TrainConfig.from_yaml(REPO / "configs/train/mp20_cpu.yaml")
    assert cfg.conditions.names == ["bulk_modulus"]
    assert cfg.model == cpu.model  # --init only loads tensors of matching shape
    assert cfg.diffusion == cpu.diffusion.model_copy(update={"cond_dropout": 0.2})
    assert cfg.data.dataset.endswith("aflow_props/bulk_modulus")


def test_bulk_modulus_column_in_shared_data(datasets_dir):
    import pandas as pd

    for split in ("train", "val", "test"):
        df = pd.read_csv(datasets_dir / "aflow_props" / "bulk_modulus" / f"{split}.csv.gz",
                         nrows=5)
        assert {"cif", "bulk_modulus"} <= set(df.columns)


@pytest.mark.slow
def test_finetune_bulk_modulus_config_runs(datasets_dir, tmp_path):
    """Two steps of the shipped config from a same-architecture checkpoint (~1 min on CPU;
    uses the user cache of processed data)."""
    pre_cfg = yaml.safe_load((REPO / "configs/train/mp20_cpu.yaml").read_text())
    pre_cfg["data"].update(dataset=str(datasets_dir / "mp20_reduced"), val_split=None)
    pre_path = tmp_path / "mp20_cpu.yaml"
    pre_path.write_text(yaml.safe_dump(pre_cfg))
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--config", str(pre_path), "--out",
                            str(tmp_path / "mp"), "--max-steps", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [
        "train", "--config", str(REPO / "configs/train/finetune_bulk_modulus.yaml"),
        "--data", str(datasets_dir / "aflow_props" / "bulk_modulus"),
        "--init", str(tmp_path / "mp" / "checkpoints" / "last"),
        "--out", str(tmp_path / "bm"), "--max-steps", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    _, meta = load_checkpoint(tmp_path / "bm" / "checkpoints" / "last")
    assert 100 < meta["conditions"]["bulk_modulus"]["mean"] < 120


def _csv_without(src: Path, dst: Path, column: str) -> Path:
    with open(src, newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = [k for k in rows[0] if k != column]
    with open(dst, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return dst


def test_finetune_on_data_without_the_old_conditions(cond_workdir, tiny_csv, pretrained):
    """The AFLOW case: new data has only the new column; the config lists only it. The
    pretrained conditions are inherited, so the model starts exactly as the pretrained one."""
    data = _csv_without(tiny_csv, cond_workdir / "only_new.csv", "band_gap")
    path = cond_workdir / "ft_only_new.yaml"
    path.write_text(yaml.safe_dump(tiny_config([NEW])))
    cfg = TrainConfig.from_yaml(path)
    pre, pre_meta = load_checkpoint(pretrained)
    ft, missing, skipped = _step0_model(cfg, data, pretrained)

    # (a) all pretrained tensors load (band_gap's embedding and null included)
    assert [c.name for c in ft.cfg.conditions] == ["band_gap", NEW]
    assert ft.cfg.conditions[0] == pre.cfg.conditions[0]  # the checkpoint's mean / std
    assert skipped == []
    assert missing and {k.split(".")[2] for k in missing} == {NEW}
    ft_state = ft.state_dict()
    pre_state = read_weights(resolve_checkpoint(pretrained))
    assert any(k.startswith("cond.null.band_gap") for k in pre_state)
    for k, v in pre_state.items():
        assert torch.equal(ft_state[k], v), k

    # (b) bit-identical outputs with band_gap given values, NaN or absent
    batch = random_crystals([2, 3, 4], torch.Generator().manual_seed(2), dtype=torch.float32)
    t = torch.tensor([0.2, 0.5, 0.8])
    nan = torch.full((3,), float("nan"))
    bg = torch.tensor([0.1, 2.0, 5.0])
    hard = torch.tensor([20.0, 80.0, 300.0])
    cases = [
        ({"band_gap": bg}, {"band_gap": bg}),
        ({"band_gap": bg}, {"band_gap": bg, NEW: hard}),
        ({"band_gap": nan}, {"band_gap": nan, NEW: nan}),
        ({"band_gap": nan}, {NEW: hard}),
        (None, {NEW: nan}),
        (None, None),
    ]
    with torch.no_grad():
        for c_pre, c_ft in cases:
            a, b = pre(batch, t, c_pre), ft(batch, t, c_ft)
            assert torch.equal(a.coord, b.coord)
            assert torch.equal(a.lattice, b.lattice)
            assert torch.equal(a.type_logits, b.type_logits)
        assert not torch.equal(pre(batch, t, {"band_gap": bg}).coord, pre(batch, t, None).coord)

    # (c) a few steps through the CLI with finite loss; sampling stats kept for both
    run = cond_workdir / "ft_only_new"
    r = CliRunner().invoke(
        app,
        ["train", "--config", str(path), "--data", str(data), "--init", str(pretrained),
         "--out", str(run), "--max-steps", "3", "--no-progress", "--device", "cpu"],
    )
    assert r.exit_code == 0, r.output
    assert "0 skipped" in r.output
    with open(run / "metrics.csv") as fh:
        losses = [float(row["loss"]) for row in csv.DictReader(fh)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    tuned, meta = load_checkpoint(run / "checkpoints" / "last")
    assert [c.name for c in tuned.cfg.conditions] == ["band_gap", NEW]
    assert meta["conditions"]["band_gap"] == pre_meta["conditions"]["band_gap"]
    assert {"min", "max"} <= set(meta["conditions"]["band_gap"])
    assert meta["conditions"][NEW]["count"] == 8
    assert tuned.cond.value[NEW][-1].weight.abs().sum() > 0

    # resuming the fine-tuning run keeps the inherited condition
    r = CliRunner().invoke(
        app,
        ["train", "--config", str(path), "--data", str(data), "--resume",
         "--out", str(run), "--max-steps", "4", "--no-progress", "--device", "cpu"],
    )
    assert r.exit_code == 0, r.output
    tuned, meta = load_checkpoint(run / "checkpoints" / "last")
    assert [c.name for c in tuned.cfg.conditions] == ["band_gap", NEW]
    assert meta["step"] == 4


def test_init_with_another_model_size_fails(cond_workdir, tiny_csv, pretrained):
    """(d) a model-size mismatch is a usage error, not a silent training from scratch."""
    path = cond_workdir / "ft_bigger.yaml"
    cfg = tiny_config([NEW])
    cfg["model"]["hidden"] = 48
    path.write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(
        app,
        ["train", "--config", str(path), "--data", str(tiny_csv), "--init", str(pretrained),
         "--out", str(cond_workdir / "ft_bigger"), "--max-steps", "2", "--no-progress",
         "--device", "cpu"],
    )
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --init"), r.output
    assert "does not fit the config's model" in lines[0]
    assert "Traceback" not in r.output

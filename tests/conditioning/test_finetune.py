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
from matgen.models import load_checkpoint
from matgen.testing import random_crystals
from matgen.training import (
    TrainConfig,
    build_components,
    dataset_stats,
    load_init_weights,
    read_weights,
    resolve_checkpoint,
)

NEW = "hardness"


def _ft_config(tmp: Path) -> tuple[Path, TrainConfig]:
    path = tmp / "ft.yaml"
    path.write_text(yaml.safe_dump(tiny_config(["band_gap", NEW])))
    return path, TrainConfig.from_yaml(path)


def _step0_model(cfg: TrainConfig, csv_path: Path, init: Path):
    """What ``train(cfg, init=...)`` builds before its first step."""
    names = cfg.conditions.names
    stats = dataset_stats(load_dataset(csv_path, max_atoms=cfg.data.max_atoms), names)
    torch.manual_seed(cfg.seed)
    model, _ = build_components(cfg, stats)
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

"""The shipped training configs: every one parses, and ``mp20_default.yaml`` is the recipe the
shipped default model records (its network, its training settings, its sampling defaults)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matgen.diffusion import DiffusionConfig
from matgen.training import TrainConfig

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs/train").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_training_config_parses(path):
    TrainConfig.from_yaml(path)


def test_mp20_default_is_the_shipped_recipe():
    cfg = TrainConfig.from_yaml(REPO / "configs/train/mp20_default.yaml")
    meta = json.loads((REPO / "matgen/assets/models/default/model.json").read_text())
    record = meta["metadata"]["config"]  # the training config of the shipped run (stage 6)
    shipped_net = meta["denoiser"]
    for key in ("arch", "hidden", "layers", "num_freqs", "dropout", "size_groups"):
        assert getattr(cfg.model, key) == shipped_net[key], key
    for key in ("batch_size", "ema_decay", "csp_share", "sync_every", "task", "precision"):
        assert getattr(cfg, key) == record[key], key
    assert cfg.data.reduce == record["data"]["reduce"] == "niggli"
    assert cfg.conditions.properties == record["conditions"]["properties"]
    assert cfg.conditions.drop_prob == record["conditions"]["drop_prob"]
    for key in ("weight_decay", "warmup_steps", "min_lr_ratio", "grad_clip", "schedule"):
        assert getattr(cfg.optim, key) == pytest.approx(record["optim"][key]), key
    assert cfg.optim.lr == pytest.approx(7e-4)  # stages 1-5 (stage 6 continued at 4e-4)
    # the sampling defaults the shipped checkpoint carries (set after its training)
    shipped = DiffusionConfig(**meta["metadata"]["diffusion"])
    assert cfg.diffusion == shipped

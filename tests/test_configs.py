"""Every shipped YAML config validates against its pydantic model (a typo fails here, not on a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "train").glob("*.yaml")), ids=str)
def test_train_configs_validate(path):
    from matgen.training import TrainConfig

    cfg = TrainConfig.from_yaml(path)
    assert cfg.batch_size > 0 and cfg.max_steps > 0


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "campaigns").glob("*.yaml")), ids=str)
def test_campaign_configs_validate(path):
    from matgen.campaign import load_config

    cfg = load_config(path)
    assert cfg.rounds >= 1 and cfg.batch_size <= cfg.pool_size


def test_mp20_default_is_the_shipped_recipe():
    """``configs/train/mp20_default.yaml`` is the recipe the shipped default records: its network,
    its training settings (peak LR, substitution) and its sampling defaults."""
    import json

    from matgen.diffusion import DiffusionConfig
    from matgen.training import TrainConfig

    cfg = TrainConfig.from_yaml(ROOT / "configs/train/mp20_default.yaml")
    meta = json.loads((ROOT / "matgen/assets/models/default/model.json").read_text())
    record = meta["metadata"]["config"]  # the training config of the shipped run (stage 6)
    for key in ("arch", "hidden", "layers", "num_freqs", "dropout", "size_groups"):
        assert getattr(cfg.model, key) == meta["denoiser"][key], key
    for key in ("batch_size", "ema_decay", "csp_share", "sync_every", "task", "precision"):
        assert getattr(cfg, key) == record[key], key
    assert cfg.data.reduce == record["data"]["reduce"] == "niggli"
    assert cfg.data.substitute == record["data"]["substitute"] == 0.6
    assert cfg.conditions.properties == record["conditions"]["properties"]
    assert cfg.conditions.drop_prob == record["conditions"]["drop_prob"]
    for key in ("weight_decay", "warmup_steps", "min_lr_ratio", "grad_clip", "schedule"):
        assert getattr(cfg.optim, key) == pytest.approx(record["optim"][key]), key
    assert cfg.optim.lr == pytest.approx(record["optim"]["lr"]) == pytest.approx(7e-4)
    assert cfg.diffusion == DiffusionConfig(**meta["metadata"]["diffusion"])

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

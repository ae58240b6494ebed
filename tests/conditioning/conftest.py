"""Tiny labelled CSV and a tiny band-gap-conditioned checkpoint, made in code (no shared data)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _cond_data import tiny_config, write_csv
from typer.testing import CliRunner


@pytest.fixture(scope="session")
def cond_workdir(tmp_path_factory) -> Path:
    """Working folder with its own matgen cache (processed data stay out of the user cache)."""
    d = tmp_path_factory.mktemp("conditioning")
    mp = pytest.MonkeyPatch()
    mp.setenv("MATGEN_CACHE_DIR", str(d / "cache"))
    yield d
    mp.undo()


@pytest.fixture(scope="session")
def tiny_csv(cond_workdir) -> Path:
    return write_csv(cond_workdir / "tiny.csv")


@pytest.fixture(scope="session")
def pretrained(cond_workdir, tiny_csv) -> Path:
    """A tiny model conditioned on ``band_gap`` only, 4 steps through ``matgen train``."""
    from matgen.cli import app

    cfg_path = cond_workdir / "pre.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(["band_gap"])))
    run = cond_workdir / "pre"
    r = CliRunner().invoke(
        app,
        ["train", "--config", str(cfg_path), "--data", str(tiny_csv), "--out", str(run),
         "--max-steps", "4", "--no-progress", "--device", "cpu"],
    )
    assert r.exit_code == 0, r.output
    return run / "checkpoints" / "last"

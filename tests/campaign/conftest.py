from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
warnings.filterwarnings("ignore", category=UserWarning)

from _toy import write_toy_config, write_toy_csv


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory) -> Path:
    return write_toy_csv(tmp_path_factory.mktemp("toy") / "toy.csv")


@pytest.fixture()
def toy_config(tmp_path, toy_csv) -> Path:
    return write_toy_config(tmp_path, toy_csv)


__all__ = ["write_toy_config"]

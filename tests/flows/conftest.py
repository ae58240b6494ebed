"""One Prefect test server for all flow tests (starting it takes 7-12 s)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "campaign"))
warnings.filterwarnings("ignore", category=UserWarning)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from _toy import write_toy_config, write_toy_csv


@pytest.fixture(scope="session", autouse=True)
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory) -> Path:
    return write_toy_csv(tmp_path_factory.mktemp("toy") / "toy.csv")


__all__ = ["write_toy_config"]

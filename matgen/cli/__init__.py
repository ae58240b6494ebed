"""The ``matgen`` command line: thin wrappers over the Python API.

Exit codes: 0 success, 1 bad data or a failed check, 2 usage error.
Each sub-module registers its commands on :data:`app`.
"""

from __future__ import annotations

from matgen.cli import campaign, data, evaluate, sample, score, train  # noqa: F401  (registration)
from matgen.cli._app import app

__all__ = ["app"]


def main() -> None:  # pragma: no cover - console entry
    app()

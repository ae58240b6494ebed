"""``python -m matgen``: the same command line as the ``matgen`` script."""

from __future__ import annotations

from matgen.cli import app

if __name__ == "__main__":
    app()

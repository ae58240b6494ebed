"""`matgen train` commands."""

from __future__ import annotations

from matgen.cli._app import app  # noqa: F401

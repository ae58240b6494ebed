"""Output paths checked before any work: a folder, a missing or read-only parent, a path under
a file (``/dev/null/x``) is a one-line usage error instead of a crash after minutes of work."""

from __future__ import annotations

import os
from pathlib import Path


def output_file_problem(path: Path, flag: str) -> str | None:
    """Why ``path`` cannot be written as an output file (None when it can).

    Parents that do not exist yet are fine when they can be made (the command creates them).
    """
    if path.is_dir():
        return f"{flag} {path} is a folder; give a file name"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{flag} {path} is not writable"
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{flag} {path}: {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{flag} {path}: cannot write in {parent}"
    return None

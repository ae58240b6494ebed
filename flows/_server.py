"""Keep the temporary Prefect server of a campaign run from outliving the run.

Without ``PREFECT_API_URL`` Prefect starts a temporary API server (a uvicorn subprocess) and
stops it at interpreter exit. A ``kill -9`` of the run skips that, and the server went on
running with parent PID 1. :func:`guard_ephemeral_server` starts that server up front and
pairs it with a small reaper process (stdlib only, its own session so a signal to the run's
process group does not reach it) that stops the server as soon as the run is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_REAPER = Path(__file__).with_name("_reaper.py")
_GUARDED: set[int] = set()


def guard_ephemeral_server() -> int | None:
    """Start Prefect's temporary server now (when this process would use one) and tie its
    life to this process.

    Returns:
        The server's PID, or None when a Prefect API URL is configured (nothing to guard).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's client reuses
    server.start()
    proc = server.server_process
    if proc is None:
        return None
    if proc.pid not in _GUARDED:
        subprocess.Popen(
            [sys.executable, str(_REAPER), str(os.getpid()), str(proc.pid)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True, start_new_session=True,
        )
        _GUARDED.add(proc.pid)
    return proc.pid

"""usage: python _reaper.py PARENT_PID SERVER_PID

Waits until PARENT_PID (the campaign run that started it) is gone, then stops SERVER_PID
(its temporary Prefect server): SIGTERM, SIGKILL after 5 s. Exits when the server stops on
its own. Standard library only: it starts in milliseconds and imports nothing of matgen.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_server(pid: int) -> bool:
    """Guard against PID reuse: the process must still be a uvicorn command."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"uvicorn" in fh.read()
    except OSError:
        return sys.platform != "linux"


def main(parent: int, server: int, poll: float = 0.5) -> int:
    while _alive(server):
        if os.getppid() != parent or not _alive(parent):
            if not _is_server(server):
                return 0
            try:
                os.kill(server, signal.SIGTERM)
                deadline = time.time() + 5.0
                while _alive(server) and time.time() < deadline:
                    time.sleep(0.1)
                if _alive(server):
                    os.kill(server, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return 0
        time.sleep(poll)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))

"""The temporary Prefect server of a campaign run dies with the run, even by kill -9 (issue 20,
item 14); cached scoring results are JSON, not cloudpickle (item 7)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill9_of_the_run_stops_its_temporary_prefect_server(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from matgen_flows._server import guard_ephemeral_server
        print(guard_ephemeral_server(), flush=True)
        time.sleep(600)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.isdigit(), line
        server = int(line)
        assert _alive(server)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 20
        while _alive(server) and time.time() < deadline:
            time.sleep(0.2)
        assert not _alive(server), "the temporary Prefect server outlived its run"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_scoring_results_are_persisted_as_json():
    from prefect.serializers import JSONSerializer, Serializer

    from matgen_flows.campaign import score_chunk

    ser = score_chunk.result_serializer
    assert isinstance(ser if isinstance(ser, Serializer) else Serializer(type=ser),
                      JSONSerializer)
    rows = [{"e_above_hull": 0.1, "band_gap": None, "suspect": False, "relaxed_cif": "x"}]
    assert JSONSerializer().loads(JSONSerializer().dumps(rows)) == rows

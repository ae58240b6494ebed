"""Concurrent runs of one campaign (issue 20, item 2): leases in the store, taken over when the
owner is gone; two `campaign run` at once never call the oracle twice for a candidate, nor
generate or score a round twice."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from matgen.campaign import Campaign, CampaignStore, load_config

HERE = Path(__file__).parent


def test_a_lease_has_one_owner_and_is_taken_over_when_the_owner_is_gone(tmp_path):
    st = CampaignStore(f"sqlite:///{tmp_path / 's.db'}", "c")
    me = f"{os.uname().nodename}:{os.getpid()}:a"
    assert st.try_lease("round0:labelled", me, 60) == (True, None)
    assert st.try_lease("round0:labelled", me, 60) == (True, None)  # re-entrant for its owner
    other = f"{os.uname().nodename}:{os.getpid()}:b"  # alive (this process), not expired
    assert st.try_lease("round0:labelled", other, 60) == (False, me)
    assert st.renew_lease("round0:labelled", me, 60)
    st.release_lease("round0:labelled", me)
    assert st.try_lease("round0:labelled", other, 60) == (True, None)
    # a holder whose process is gone on this host: taken over at once
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ghost = f"{os.uname().nodename}:{dead}:x"
    assert st.try_lease("round0:scored", ghost, 600) == (True, None)
    assert st.try_lease("round0:scored", me, 60) == (True, ghost)
    assert st.lease("round0:scored")["previous_owner"] == ghost
    assert not st.renew_lease("round0:scored", ghost, 60)  # the old owner lost it
    # a holder on another host: only after its expiry
    remote = "elsewhere:1:y"
    assert st.try_lease("round1:generated", remote, 0.3) == (True, None)
    assert st.try_lease("round1:generated", me, 60) == (False, remote)
    time.sleep(0.4)
    assert st.try_lease("round1:generated", me, 60) == (True, remote)


def test_hold_waits_for_the_holder_and_keeps_its_lease_alive(tmp_path):
    import threading

    st = CampaignStore(f"sqlite:///{tmp_path / 's.db'}", "c")
    order = []

    def worker(name: str, delay: float) -> None:
        time.sleep(delay)
        with st.hold("k", ttl=0.3, poll=0.05) as held:
            assert held
            order.append(f"{name} in")
            time.sleep(1.0)  # longer than the ttl: the heartbeat renews it
            order.append(f"{name} out")

    ts = [threading.Thread(target=worker, args=(n, d)) for n, d in (("a", 0), ("b", 0.2))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert order == ["a in", "a out", "b in", "b out"]
    assert st.lease("k")["owner"] is None
    # a waiter gives up as soon as the work is reported done
    with st.hold("j", ttl=5) as held:
        assert held
        with st.hold("j", ttl=5, stop=lambda: True) as second:
            assert second is False


def test_two_runs_at_once_do_every_piece_of_work_once(tmp_path, toy_csv):
    from _toy import write_toy_config

    config = write_toy_config(tmp_path, toy_csv, name="race", rounds=2, pool=10, batch=3)
    log, go = tmp_path / "calls.log", tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen([sys.executable, str(HERE / "_racer.py"), str(config), str(log),
                               n, str(go)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in ("A", "B")]
    deadline = time.time() + 240
    while not all(Path(f"{go}.{n}").exists() for n in "AB"):
        assert time.time() < deadline and all(p.poll() is None for p in procs), [
            p.communicate() for p in procs]
        time.sleep(0.1)
    go.touch()  # both start together
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    calls = [line.split(" ", 2) for line in log.read_text().splitlines()]
    oracle = Counter(c[2] for c in calls if c[1] == "oracle")
    assert len(oracle) == 2 * 3 and set(oracle.values()) == {1}, oracle
    cfg = load_config(config)
    gen = Counter(c[2] for c in calls if c[1] == "generate")
    chunks = sum(len(Campaign(cfg).chunk_plan(r)) for r in range(2))
    assert len(gen) == chunks and set(gen.values()) == {1}, gen  # no wasted generation
    scored = Counter(c[2] for c in calls if c[1] == "score")
    assert set(scored.values()) == {1}, scored
    camp = Campaign(cfg)
    assert [r["status"] for r in camp.store.rounds()] == ["reported", "reported"]
    subs = camp.store.submissions()
    assert len(subs) == 6 and {s["status"] for s in subs} == {"done"}

"""The DFT service with GPAW itself (runs only where the ``dft`` extra is installed:
``bash scripts/install_dft.sh``). Tiny cells at a low cutoff: a few seconds each.

The whole DFT suite, the kill -9 test included: ``pytest tests/dft -m "not gpu"``."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("gpaw")
pytest.importorskip("gpaw_data")

from matgen.dft import (
    OK,
    SCF_NOT_CONVERGED,
    TIMEOUT,
    DFTService,
    DFTSettings,
)

CHEAP = DFTSettings(ecut_ev=200.0, kpt_density=1.5, relax=False, time_limit_s=120.0)


def _al(a: float = 4.04, repeat: int = 1):
    from ase.build import bulk

    return bulk("Al", "fcc", a=a).repeat(repeat)


def test_one_atom_cell_gives_a_finite_energy_and_is_cached(tmp_path):
    service = DFTService(tmp_path, CHEAP)
    r = service.run(_al(), label="al")
    assert r.status == OK, r.message
    assert math.isfinite(r.energy_ev) and r.energy_per_atom == pytest.approx(r.energy_ev)
    assert -5.0 < r.energy_per_atom < -2.0  # PBE Al: about -3.7 eV/atom on GPAW's scale
    assert not r.from_cache and not r.spin_polarised
    again = service.run(_al())
    assert again.from_cache and again.energy_ev == r.energy_ev
    assert (tmp_path / f"{r.key}.json").exists()


def test_unconverged_scf_is_a_labelled_failure_not_a_number(tmp_path):
    service = DFTService(tmp_path, CHEAP.replace(scf_maxiter=2))
    r = service.run(_al())
    assert r.status == SCF_NOT_CONVERGED and not r.ok
    assert r.energy_ev is None and r.energy_per_atom is None
    cached = json.loads((tmp_path / f"{r.key}.json").read_text())
    assert cached["status"] == SCF_NOT_CONVERGED and cached["energy_ev"] is None


def test_time_limit_kills_the_worker_and_caches_nothing(tmp_path):
    service = DFTService(tmp_path, CHEAP.replace(time_limit_s=0.3))
    t0 = time.perf_counter()
    r = service.run(_al())
    assert r.status == TIMEOUT and r.energy_ev is None
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / f"{r.key}.json").exists()  # a later, longer run tries again


def test_element_without_paw_setup_is_labelled_before_running(tmp_path):
    from ase.build import bulk

    from matgen.dft import NO_SETUP, missing_setups

    assert missing_setups(["Tc", "Al"]) == ["Tc"]  # gpaw-data ships no Tc dataset
    r = DFTService(tmp_path, CHEAP).run(bulk("Tc", "hcp", a=2.74, c=4.4))
    assert r.status == NO_SETUP and "Tc" in r.message and r.energy_ev is None
    assert not list(tmp_path.glob("*.json"))


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from ase.build import bulk
    from matgen.dft import DFTService, DFTSettings
    s = DFTSettings(ecut_ev=200.0, kpt_density=1.5, relax=False)
    service = DFTService(sys.argv[1], s)
    service.run(bulk("Al", "fcc", a=4.04))
    service.run(bulk("Al", "fcc", a=4.10).repeat(2))  # killed while this one runs
    """
)


@pytest.mark.slow  # two worker processes and a kill: ~7 s (`pytest tests/dft -m slow`)
def test_kill_9_mid_run_keeps_finished_calculations(tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(cache)], env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(cache.glob("*.json")):
        assert proc.poll() is None, "the script ended before it could be killed"
        time.sleep(0.05)
    assert list(cache.glob("*.json")), "no calculation finished in time"
    time.sleep(0.5)  # the second calculation is under way now
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = list(cache.glob("*.json"))
    assert len(finished) == 1
    record = json.loads(finished[0].read_text())
    assert record["status"] == OK and math.isfinite(record["energy_ev"])
    # a new run takes the finished one from the cache and computes only the interrupted one
    service = DFTService(cache, CHEAP)  # same key: time limits are not part of it
    first = service.run(_al())
    assert first.from_cache and first.energy_ev == record["energy_ev"]
    # the worker of the killed run died with it (PR_SET_PDEATHSIG): nothing still computes
    time.sleep(0.5)
    out = subprocess.run(
        ["pgrep", "-f", f"matgen.dft._worker {cache}"], capture_output=True, check=False
    )
    assert out.stdout.strip() == b""


def test_mp_scheme_runs_nio_with_mps_u_and_plain_pbe_without(tmp_path):
    from ase.build import bulk

    nio = bulk("NiO", "rocksalt", a=4.17)
    plus_u = DFTService(tmp_path, CHEAP).run(nio, label="nio_u")
    plain = DFTService(tmp_path, CHEAP.replace(corrections="none")).run(nio, label="nio")
    assert plus_u.status == OK and plain.status == OK, (plus_u.message, plain.message)
    assert plus_u.settings["hubbard_u"] == [["Ni", 6.2]] and "hubbard_u" not in plain.settings
    assert plus_u.spin_polarised and plus_u.key != plain.key
    # Dudarev's term U/2 Tr[n - n n] >= 0: the +U energy lies above the plain one
    assert plus_u.energy_per_atom > plain.energy_per_atom
    assert "Hubbard: {U: 6.2" in (tmp_path / "logs" / f"nio_u_{plus_u.key}.txt").read_text()

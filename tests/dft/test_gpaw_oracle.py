"""``oracle: {kind: dft}`` with GPAW itself, through the campaign engine: 1-atom Al cells at a
low cutoff (seconds each), and a campaign killed with SIGKILL mid-labelling that keeps its
finished calculations. Runs only where the ``dft`` extra is installed."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("gpaw")
pytest.importorskip("gpaw_data")

from matgen.campaign import Campaign, load_config

# two 1-atom Al crystals: fcc near the reference, bcc (a metastable polymorph above it)
CELLS = {"al-fcc": ("fcc", 4.04), "al-bcc": ("bcc", 3.24)}


def _pool(path):
    import pandas as pd
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    rows = [
        {"material_id": mid, "e_above_hull": 0.0,
         "cif": AseAtomsAdaptor.get_structure(bulk("Al", kind, a=a)).to(fmt="cif")}
        for mid, (kind, a) in CELLS.items()
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _config(tmp_path) -> str:
    pool = _pool(tmp_path / "pool.csv")
    text = f"""
name: dftal
rounds: 1
pool_size: 2
batch_size: 2
objectives:
  - {{property: e_form_per_atom, maximum: 0.05, scale: 0.05}}
generator: {{kind: dataset, pool_csv: {pool}}}
scorer: {{kind: dataset, labels_csv: {pool}}}
oracle: {{kind: dft, ecut_ev: 200, kpt_density: 1.5, dft_relax: false, dft_hull: false,
          dft_time_limit_s: 120}}
acquisition: {{kind: random, diversity: none}}  # both Al cells
work_dir: {tmp_path / 'work'}
"""
    path = tmp_path / "dft.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture()
def no_mp_data(tmp_path, monkeypatch):
    """Elemental references from ASE's crystals (no MP-20 index to load: faster)."""
    empty = tmp_path / "no_data"
    empty.mkdir()
    monkeypatch.setenv("MATGEN_DATA_DIR", str(empty))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return empty


def _by_source(camp):
    cands = {c.id: c.source_id for c in camp.store.candidates()}
    return {cands[cid]: lab for cid, lab in camp.store.labels().items()}


def test_campaign_labels_with_gpaw(tmp_path, no_mp_data):
    cfg = load_config(_config(tmp_path))
    camp = Campaign(cfg)
    camp.run()
    subs = camp.store.submissions()
    assert [s["status"] for s in subs] == ["done", "done"] and subs[0]["oracle"] == "dft:gpaw-pbe"
    labels = _by_source(camp)
    assert set(labels) == set(CELLS)
    fcc, bcc = labels["al-fcc"], labels["al-bcc"]
    assert -5.0 < fcc["energy_per_atom"] < -2.0  # GPAW's PBE scale
    assert abs(fcc["e_form_per_atom"]) < 0.02  # ASE's fcc Al reference, a = 4.05 vs 4.04
    assert 0.01 < bcc["e_form_per_atom"] < 0.2  # bcc Al sits above fcc (0.03 at this cutoff)
    assert fcc["e_above_hull"] is None  # dft_hull: false labels no hull distance
    cache = cfg.work_path() / "dft_cache"
    assert len(list(cache.glob("*.json"))) == 3  # two candidates and the Al reference


KILL_SCRIPT = """
import sys
from matgen.campaign import Campaign, load_config
Campaign(load_config(sys.argv[1])).run()
"""


@pytest.mark.slow  # a campaign in a subprocess killed mid-labelling, then resumed: ~30 s
def test_kill_9_mid_labelling_keeps_finished_calculations(tmp_path, no_mp_data, monkeypatch):
    from matgen.dft import DFTService

    path = _config(tmp_path)
    cache = load_config(path).work_path() / "dft_cache"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, path], env=dict(os.environ))
    deadline = time.time() + 300
    while time.time() < deadline and not list(cache.glob("*.json")):
        assert proc.poll() is None, "the campaign ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.3)  # the next calculation is under way
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.stem: json.loads(p.read_text()) for p in cache.glob("*.json")}
    assert 1 <= len(finished) < 3, "killed too late: nothing was left to resume"
    assert all(r["status"] == "ok" and math.isfinite(r["energy_ev"]) for r in finished.values())

    computed: list[str] = []
    compute = DFTService._compute

    def spy(self, atoms, key, label):
        computed.append(key)
        return compute(self, atoms, key, label)

    monkeypatch.setattr(DFTService, "_compute", spy)
    camp = Campaign(load_config(path))
    camp.run()  # resumes the round: the oracle is asked again for the same candidates
    assert [s["status"] for s in camp.store.submissions()] == ["done", "done"]
    assert not set(computed) & set(finished)  # nothing finished was computed again
    assert len(computed) == 3 - len(finished)
    assert all(math.isfinite(v["energy_per_atom"]) for v in _by_source(camp).values())

"""DDP under torchrun on CPU (gloo, 2 processes) against a single process, same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


def _torchrun(run_dir: Path, out: Path, *extra: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "ddp_worker.py"), str(run_dir), str(out), *extra]
    p = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


def _losses(out: Path, rank: int) -> list[float]:
    d = json.loads(Path(f"{out}.rank{rank}").read_text())
    assert d["world"] == 2
    return [v for _, v in d["losses"]]


@pytest.mark.timeout(300)
def test_ddp_two_ranks_match_single_process_and_resume(tmp_path):
    from ddp_worker import run

    single = run(str(tmp_path / "single"))
    ref = [v for _, v in single.losses]

    _torchrun(tmp_path / "ddp", tmp_path / "ddp.json")
    l0, l1 = _losses(tmp_path / "ddp.json", 0), _losses(tmp_path / "ddp.json", 1)
    assert l0 == l1  # every rank logs the global (all-reduced) loss
    assert len(l0) == 6
    assert l0 == pytest.approx(ref, rel=1e-5, abs=1e-6)
    assert ref[-1] < ref[0]  # it learns
    ck = tmp_path / "ddp" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["last", "step_3", "step_6"]

    # the DDP weights after 6 steps equal the single-process ones
    sd = torch.load(ck / "last" / "training_state.pt", weights_only=True)
    ss = torch.load(tmp_path / "single" / "checkpoints" / "last" / "training_state.pt",
                    weights_only=True)
    for k, v in ss["model"].items():
        assert torch.allclose(sd["model"][k], v, rtol=1e-4, atol=1e-6), k
    assert len(sd["rng"]) == 2

    # kill after step 3 (drop later checkpoints), resume under torchrun: same trajectory
    shutil.rmtree(ck / "step_6")
    shutil.rmtree(ck / "last")
    _torchrun(tmp_path / "ddp", tmp_path / "resumed.json", "--resume")
    resumed = json.loads((tmp_path / "resumed.json.rank0").read_text())["losses"]
    assert [s for s, _ in resumed] == [4, 5, 6]
    assert [v for _, v in resumed] == pytest.approx(l0[3:], rel=1e-6)

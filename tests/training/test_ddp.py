"""DDP under torchrun on CPU (gloo, 2 processes) against a single process, same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("bucket_view", ["0", "1"])
def test_ddp_two_ranks_match_single_process_and_resume(tmp_path, bucket_view):
    from ddp_worker import run

    single = run(tmp_path / "single")
    ref = [v for _, v in single.losses]
    assert ref[4] < ref[0] and ref[5] < ref[1]  # it learns (steps alternate CSP / de novo)

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               DDP_BUCKET_VIEW=bucket_view)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "ddp_worker.py"), str(tmp_path / "ddp")]
    for _attempt in range(2):  # a second try only when the rendezvous port was taken
        p = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True,
                           timeout=240)
        port_race = any(m in p.stderr for m in ("EADDRINUSE", "Address already in use",
                                                 "DistNetworkError"))
        if p.returncode == 0 or not port_race:
            break
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["bucket_view"] == (bucket_view == "1")
    l0 = [v for _, v in r0["losses"]]
    assert l0 == [v for _, v in r1["losses"]]  # every rank logs the global (all-reduced) loss
    assert l0 == pytest.approx(ref, rel=1e-5, abs=1e-6)

    ck = tmp_path / "ddp" / "full" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["last", "step_3", "step_6"]
    sd = torch.load(ck / "last" / "training_state.pt", weights_only=True)
    ss = torch.load(tmp_path / "single" / "checkpoints" / "last" / "training_state.pt",
                    weights_only=True)
    for k, v in ss["model"].items():  # DDP weights after 6 steps == single-process weights
        assert torch.allclose(sd["model"][k], v, rtol=1e-4, atol=1e-6), k
    assert len(sd["rng"]) == 2  # one RNG state per rank

    # the killed-after-step-3 run resumed under torchrun follows the same trajectory
    assert [s for s, _ in r0["resumed"]] == [4, 5, 6]
    assert [v for _, v in r0["resumed"]] == pytest.approx(l0[3:], rel=1e-6)
    sk = torch.load(tmp_path / "ddp" / "killed" / "checkpoints" / "last" / "training_state.pt",
                    weights_only=True)
    for k, v in sd["ema"].items():
        assert torch.allclose(sk["ema"][k], v, rtol=1e-6, atol=1e-7), k

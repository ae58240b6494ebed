"""optim.schedule: time: the cosine ends when the call's --max-time is spent, whatever the step
rate; a resumed run spreads the rest of its cosine over its own budget."""

from __future__ import annotations

import pytest
import torch
from _standin import TinyDenoiser, TinyDiffusion, tiny_crystals

from matgen.training import TrainConfig, train, warmup_cosine
from matgen.training._checkpoint import load_training_state


def _sched(total=1000):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    return opt, warmup_cosine(opt, warmup_steps=2, total_steps=total, min_lr_ratio=0.1)


def test_time_share_drives_the_cosine_and_a_resume_continues_from_its_progress():
    opt, sch = _sched()
    f = sch.lr_lambdas[0]
    for _ in range(3):  # warm-up is by steps
        opt.step()
        sch.step()
    f.time_share = 0.5
    opt.step()
    sch.step()
    assert sch.get_last_lr()[0] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + 0.0))  # cos(pi/2) = 0
    saved = sch.state_dict()
    # a new call: restored progress 0.5, its own budget spreads the other half
    opt2, sch2 = _sched()
    sch2.load_state_dict(saved)
    f2 = sch2.lr_lambdas[0]
    assert f2.progress == pytest.approx(0.5)
    f2.start_call()
    f2.time_share = 0.5  # half of the new budget -> three quarters of the cosine
    opt2.step()
    sch2.step()
    assert f2.progress == pytest.approx(0.75)
    f2.time_share = 1.0
    opt2.step()
    sch2.step()
    assert sch2.get_last_lr()[0] == pytest.approx(0.1)
    # the cosine never runs backwards, and by steps alone it is the old schedule
    f2.time_share = 0.0
    opt2.step()
    sch2.step()
    assert sch2.get_last_lr()[0] == pytest.approx(0.1)


def _cfg(**optim):
    return TrainConfig.model_validate({
        "batch_size": 4, "max_steps": 10**6, "checkpoint_every": 10**6, "log_every": 1,
        "optim": {"lr": 1e-2, "warmup_steps": 1, "min_lr_ratio": 0.1, **optim}, "seed": 3})


def test_a_timed_run_ends_its_cosine_at_the_time_limit(tmp_path):
    res = train(_cfg(schedule="time"), data=tiny_crystals(), out=tmp_path / "r",
                denoiser=TinyDenoiser(), diffusion=TinyDiffusion(), progress=False, log=None,
                max_time_minutes=0.03)
    assert res.stopped == "max_time" and 3 < res.step < 10**6
    state = load_training_state(res.checkpoint)
    factor = state["scheduler"]["lr_lambdas"][0]
    assert factor["progress"] > 0.9  # the last step saw >= 90% of the budget spent
    # the same budget by steps: the cosine has hardly started
    res2 = train(_cfg(), data=tiny_crystals(), out=tmp_path / "s", denoiser=TinyDenoiser(),
                 diffusion=TinyDiffusion(), progress=False, log=None, max_time_minutes=0.03)
    f2 = load_training_state(res2.checkpoint)["scheduler"]["lr_lambdas"][0]
    assert f2["progress"] < 0.01


def test_time_schedule_without_a_budget_is_a_usage_error(tmp_path):
    with pytest.raises(ValueError, match="--max-time"):
        train(_cfg(schedule="time"), data=tiny_crystals(), out=tmp_path / "r",
              denoiser=TinyDenoiser(), diffusion=TinyDiffusion(), progress=False, log=None)

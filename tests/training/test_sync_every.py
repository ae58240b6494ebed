"""``sync_every > 1``: the host reads the steps' values every N steps (and before every metrics
row, checkpoint and the last step); the run is the same as with a sync every step."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from _standin import TinyDenoiser, TinyDiffusion, tiny_crystals
from test_loop import _cfg as loop_cfg

from matgen.training import EMA, NonFiniteLossError, TrainConfig, _loop, train
from matgen.training._checkpoint import load_training_state

TIME_COLUMNS = {"steps_per_s", "elapsed_s"}


def _cfg(**kw) -> TrainConfig:
    return loop_cfg(**{"max_steps": 12, "checkpoint_every": 6, "log_every": 4, **kw})


def _run(out, poison=(), **kw):
    torch.manual_seed(0)  # the stand-in's initial weights
    return train(_cfg(**kw), data=tiny_crystals(), out=out,
                 denoiser=TinyDenoiser(conditions=("band_gap",)),
                 diffusion=TinyDiffusion(poison_calls=set(poison)), progress=False, log=None)


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _same_run(a, b, ra, rb):
    """Same losses, metrics rows (but the clock), checkpoints and final weights."""
    assert [s for s, _ in ra.losses] == [s for s, _ in rb.losses]
    assert torch.allclose(torch.tensor([v for _, v in ra.losses]),
                          torch.tensor([v for _, v in rb.losses]), equal_nan=True)
    assert ra.nonfinite_steps == rb.nonfinite_steps
    rows_a, rows_b = _rows(a), _rows(b)
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for x, y in zip(rows_a, rows_b, strict=True):
        assert x.keys() == y.keys()
        for k in x.keys() - TIME_COLUMNS:
            if x[k] and x[k] != y[k]:
                assert float(x[k]) == pytest.approx(float(y[k]), rel=1e-4, abs=1e-6), k
            else:
                assert x[k] == y[k], k
    names = sorted(p.name for p in (a / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (b / "checkpoints").iterdir())
    sa = load_training_state(a / "checkpoints" / "last")
    sb = load_training_state(b / "checkpoints" / "last")
    assert sa["step"] == sb["step"] and sa["nonfinite_total"] == sb["nonfinite_total"]
    for key in ("model", "ema"):
        for k in sa[key]:
            assert torch.allclose(sa[key][k], sb[key][k], atol=1e-6), (key, k)
    return sa, sb


def test_sync_every_gives_the_same_run(tmp_path, monkeypatch):
    one = _run(tmp_path / "one")
    syncs = []
    flush = _loop._flush

    def counted(run, state, *a):
        syncs.append(state.step)
        return flush(run, state, *a)

    monkeypatch.setattr(_loop, "_flush", counted)
    four = _run(tmp_path / "four", sync_every=4)
    assert syncs == [4, 6, 8, 12]
    assert four.step == 12 and four.stopped == "max_steps"
    assert all(math.isfinite(v) for _, v in four.losses)
    _same_run(tmp_path / "one", tmp_path / "four", one, four)
    # syncs at 4, 6 (checkpoint), 8, 12: rows at 4, 8, 12; checkpoints at 6, 12
    assert [int(r["step"]) for r in _rows(tmp_path / "four")] == [4, 8, 12]
    assert {"step_6", "step_12", "last"} <= {p.name for p in (tmp_path / "four" / "checkpoints")
                                             .iterdir()}


def test_a_nonfinite_step_is_skipped_on_the_device(tmp_path):
    one = _run(tmp_path / "one", poison={6}, max_steps=8)
    four = _run(tmp_path / "four", poison={6}, max_steps=8, sync_every=4)
    assert four.nonfinite_steps == 1
    assert [s for s, v in four.losses if math.isnan(v)] == [6]
    _, s4 = _same_run(tmp_path / "one", tmp_path / "four", one, four)
    # AdamW's step counter did not count the skipped step
    steps = {float(st["step"]) for st in s4["optimizer"]["state"].values()}
    assert steps == {7.0}


def test_skipped_steps_leave_weights_and_ema_alone(tmp_path):
    # steps 7 and 8 run between the syncs at 6 and 8; both are skipped
    res = _run(tmp_path / "r", poison={7, 8}, max_steps=8, sync_every=4)
    assert res.nonfinite_steps == 2
    a = load_training_state(tmp_path / "r" / "checkpoints" / "step_6")
    b = load_training_state(tmp_path / "r" / "checkpoints" / "last")
    for key in ("model", "ema"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)


def test_a_nonfinite_streak_still_aborts(tmp_path):
    msg = r"3 consecutive steps .*\(last at step 4, 3 in all"
    with pytest.raises(NonFiniteLossError, match=msg):
        _run(tmp_path / "r", poison=set(range(2, 100)), max_steps=20, max_nonfinite=3,
             sync_every=4, log_every=10, checkpoint_every=100)


def test_a_stop_is_seen_at_the_next_sync(tmp_path):
    res = train(_cfg(max_steps=50, sync_every=4, log_every=10, checkpoint_every=100),
                data=tiny_crystals(), out=tmp_path / "r", max_time_minutes=1e-9,
                denoiser=TinyDenoiser(conditions=("band_gap",)), diffusion=TinyDiffusion(),
                progress=False, log=None)
    assert res.stopped == "max_time" and res.step == 4
    assert [s for s, _ in res.losses] == [1, 2, 3, 4]
    assert (tmp_path / "r" / "checkpoints" / "step_4").is_dir()


def test_ema_finite_flag():
    m = torch.nn.Linear(2, 2)
    ema, ref = EMA(m, decay=0.5), EMA(m, decay=0.5)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m, step=10**6, finite=torch.tensor(0.0))
    assert all(torch.equal(before[k], v) for k, v in ema.state_dict().items())
    ema.update(m, step=10**6, finite=torch.tensor(1.0))
    ref.update(m, step=10**6)
    assert all(torch.allclose(ref.state_dict()[k], v) for k, v in ema.state_dict().items())


def test_sync_every_must_be_positive():
    with pytest.raises(ValueError, match="sync_every"):
        _cfg(sync_every=0)

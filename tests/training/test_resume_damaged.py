"""`train --resume` over damaged checkpoints (issue 20, item 6): a truncated
``training_state.pt`` (or changed weights) is skipped for the newest intact checkpoint, and the
run says so; with none intact it is one line naming the file."""

from __future__ import annotations

import shutil

import pytest
from _standin import TinyDenoiser, TinyDiffusion, tiny_crystals
from test_loop import _cfg

from matgen.models import CheckpointError
from matgen.training import train


def _train(out, resume=False, log=None):
    return train(_cfg(), data=tiny_crystals(), out=out,
                 denoiser=TinyDenoiser(conditions=("band_gap",)), diffusion=TinyDiffusion(),
                 progress=False, log=log, resume=resume)


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])


def test_truncated_training_state_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    full = _train(tmp_path / "a")
    run = tmp_path / "b"
    shutil.copytree(tmp_path / "a", run)
    shutil.rmtree(run / "checkpoints" / "last")
    _truncate(run / "checkpoints" / "step_6" / "training_state.pt")
    said: list[str] = []
    res = _train(run, resume=True, log=said.append)
    assert res.resumed_from == 3 and res.step == 6
    assert [v for _, v in res.losses] == [v for s, v in full.losses if s > 3]
    note = [m for m in said if "damaged" in m]
    assert note and "step_6" in note[0] and "step_3" in note[0] and "intact" in note[0]


def test_damaged_last_and_weights_are_skipped_too(tmp_path):
    run = tmp_path / "r"
    _train(run)
    # last/ is hard links to step_6: overwriting bytes of its weights damages both
    w = run / "checkpoints" / "last" / "model.safetensors"
    b = bytearray(w.read_bytes())
    b[-8:] = b"\x00" * 8
    w.write_bytes(bytes(b))
    said: list[str] = []
    res = _train(run, resume=True, log=said.append)
    assert res.resumed_from == 3
    assert any("sha256" in m and "step_3" in m for m in said)


def test_no_intact_checkpoint_is_one_line(tmp_path):
    run = tmp_path / "r"
    _train(run)
    for p in (run / "checkpoints").glob("*/training_state.pt"):
        if p.stat().st_size:
            _truncate(p)
    with pytest.raises(CheckpointError, match="no intact checkpoint") as e:
        _train(run, resume=True)
    assert "\n" not in str(e.value) and "training_state.pt" in str(e.value)

"""issue 20, item 10: a killed `matgen sample` left ``OUT.partial`` with finished frames, and
the re-run deleted it without a word. Now the same run resumes from its finished batches (a
batch cut short is dropped and redone), and a partial file from other options is kept aside."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import matgen.generate._generate as gen_mod
from matgen.generate import generate


class _Killed(Exception):
    pass


def _run(out, ckpt, **kw):
    notes: list[str] = []
    opts = {"sampler": "fast", "steps": 2, "seed": 3, "batch_size": 2, "device": "cpu",
            "progress": False, "log": notes.append, **kw}
    return generate(out, ckpt, 7, **opts), notes


def _crash_after(monkeypatch, n_batches: int, calls: list[int]):
    real = gen_mod._sample_batch

    def fake(plan, k, lo, chunk, callback=None):
        if len(calls) == n_batches:
            raise _Killed
        calls.append(k)
        return real(plan, k, lo, chunk, callback)

    monkeypatch.setattr(gen_mod, "_sample_batch", fake)


def _killed_run(monkeypatch, out, ckpt, n_batches: int, **kw) -> None:
    """A run "killed" after ``n_batches`` batches (the sampler patch is undone after)."""
    _crash_after(monkeypatch, n_batches, [])
    with pytest.raises(_Killed):
        _run(out, ckpt, **kw)
    monkeypatch.undo()


def test_a_killed_run_resumes_from_its_finished_batches(runs, tmp_path, monkeypatch):
    ckpt = runs[0].checkpoint
    ref = tmp_path / "ref.extxyz"
    _run(ref, ckpt)
    out = tmp_path / "gen.extxyz"
    partial = out.with_name(out.name + ".partial")
    _killed_run(monkeypatch, out, ckpt, 2)
    assert partial.exists() and not out.exists()
    with partial.open("a") as fh:  # a third batch cut short by the kill
        fh.write("5\nLattice=\"1 0 0 0 1 0 0 0 1\" Proper")
    calls: list[int] = []
    _crash_after(monkeypatch, 99, calls)
    res, notes = _run(out, ckpt)
    assert calls == [2, 3]  # batches 0 and 1 are not redone
    assert any("resuming" in n and "4 structures of 2 finished batches" in n for n in notes)
    assert res.num_structures == 7
    assert out.read_text() == ref.read_text()  # the same frames as an uninterrupted run
    assert not partial.exists() and not out.with_name(out.name + ".partial.json").exists()


def test_a_partial_from_other_options_is_kept_not_deleted(runs, tmp_path, monkeypatch):
    ckpt = runs[0].checkpoint
    out = tmp_path / "gen.cif"
    _killed_run(monkeypatch, out, ckpt, 1, seed=1)
    before = out.with_name(out.name + ".partial").read_text()
    _res, notes = _run(out, ckpt, seed=2)
    kept = out.with_name(out.name + ".partial.kept-1")
    assert kept.read_text() == before
    assert any("made with other options" in n and kept.name in n for n in notes)
    # a partial with no journal (an older matgen) is kept too
    stale = out.with_name(out.name + ".partial")
    stale.write_text("old frames")
    _res, notes = _run(out, ckpt, seed=2)
    assert out.with_name(out.name + ".partial.kept-2").read_text() == "old frames"
    assert any("no journal" in n for n in notes)


def test_the_journal_is_replaced_whole(runs, tmp_path, monkeypatch):
    """After each batch the journal is a complete JSON document naming the bytes on disk."""
    ckpt = runs[0].checkpoint
    out = tmp_path / "gen.extxyz"
    _killed_run(monkeypatch, out, ckpt, 3)
    j = json.loads(out.with_name(out.name + ".partial.json").read_text())
    assert j["batches"] == 3 and j["frames"] == 6
    assert j["bytes"] == out.with_name(out.name + ".partial").stat().st_size
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_sigkill_of_matgen_sample_then_rerun(runs, tmp_path):
    """A real SIGKILL of the CLI in the middle of sampling, then the same command again."""
    ckpt = str(runs[0].checkpoint)
    out = tmp_path / "gen.extxyz"
    cmd = [sys.executable, "-m", "matgen", "sample", "--checkpoint", ckpt, "--num", "20",
           "--batch-size", "2", "--sampler", "fast", "--steps", "10", "--device", "cpu",
           "--no-progress", "--out", str(out)]
    journal = out.with_name(out.name + ".partial.json")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline:
        if journal.exists() and json.loads(journal.read_text())["batches"] >= 2:
            break
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done = json.loads(journal.read_text())["frames"]
    assert done >= 4 and not out.exists()
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "wrote 20 structures" in r.stdout
    ref = tmp_path / "ref.extxyz"
    subprocess.run([*cmd[:-1], str(ref)], check=True, capture_output=True, timeout=600)
    assert out.read_text() == ref.read_text()

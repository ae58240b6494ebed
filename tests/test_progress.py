"""matgen._progress: plain periodic lines off a terminal, nothing when disabled."""

from __future__ import annotations

import io
import time

import pytest

from matgen._progress import Progress, format_seconds


def test_plain_lines_start_tick_and_end():
    out = io.StringIO()
    with Progress("relax", total=4, unit="structures", stream=out, interval=0.05) as bar:
        bar.advance(1)
        time.sleep(0.2)  # several ticks although nothing advanced
        bar.update(desc="relax again")
        bar.advance(3)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("relax: 0/4 structures (0%)")
    assert any("1/4 structures (25%)" in ln and "ETA" in ln for ln in lines)
    assert any(ln.startswith("relax again: 1/4") for ln in lines)  # a new description: a line
    assert lines[-1].startswith("relax again: 4/4 structures (100%), done in")


def test_disabled_prints_nothing_and_errors_say_stopped():
    out = io.StringIO()
    with Progress("x", total=3, enabled=False, stream=out) as bar:
        bar.advance()
    assert out.getvalue() == ""
    out = io.StringIO()
    with pytest.raises(RuntimeError), Progress("x", total=3, stream=out, interval=60):
        raise RuntimeError("boom")
    assert out.getvalue().splitlines()[-1].startswith("x: 0/3 (0%), stopped in")


def test_unknown_total_and_seconds():
    p = Progress("gen", unit="steps", stream=io.StringIO(), interval=60).start()
    p.advance(5)
    assert p.line().startswith("gen: 5 steps, ")
    p.close()
    assert [format_seconds(s) for s in (5, 185, 7620)] == ["5s", "3m05s", "2h07m"]


def test_bar_on_a_terminal_draws():
    out = io.StringIO()
    with Progress("bar", total=2, stream=out, bar=True) as p:
        p.advance(2)
    assert "bar" in out.getvalue()


def test_eta_of_a_resumed_run_counts_only_its_own_rate():
    """Work done before start() (a resumed run's finished batches) does not speed up the ETA."""
    p = Progress("sample", total=100, stream=io.StringIO(), interval=60)
    p.update(done=50)
    p.start()
    time.sleep(0.3)
    p.advance(1)
    line = p.line()
    p.close()
    assert line.startswith("sample: 51/100 (51%)")
    eta = line.split("ETA ")[1]
    assert eta != "0s" and not eta.startswith("1s"), line  # ~49 x 0.3 s = ~15 s, not ~0.3 s

"""Property-based fuzzing (hypothesis) of the sampling input parsers (issue 20): formulas,
chemical systems and condition ranges. Any text gives a result or a one-line
:class:`SampleInputError` / ``ValueError``, never another exception."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matgen.generate import SampleInputError, expand_formula, parse_condition
from matgen.generate._requests import MAX_CELL_ATOMS, check_formula
from matgen.generate._spec import SampleSpec

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

_SYMBOLS = ["Na", "Cl", "O", "Fe", "Li", "Xx", "H", "Pu", "Am", "D", "T", "e", "Uue"]
_NUMBERS = ["", "0", "1", "2", "0.5", ".5", "1e3", "1e400", "00", "-1", "1000", "3.0"]


def _one_line(exc: BaseException) -> None:
    msg = str(exc)
    assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
    assert "Traceback" not in msg


# formulas that look like formulas (symbols, counts, brackets) and plain garbage
formula_like = st.lists(
    st.one_of(st.tuples(st.sampled_from(_SYMBOLS), st.sampled_from(_NUMBERS)).map("".join),
              st.sampled_from(["(", ")", ")2", ")0", " ", "-", "+", "\n", "[", "]"])),
    max_size=8).map("".join)
any_text = st.text(max_size=30)


@FUZZ
@given(st.one_of(formula_like, any_text),
       st.one_of(st.sampled_from(["as-written", "auto"]), st.integers(1, 10_000)))
def test_formulas(text, units):
    try:
        check_formula(text, units)
    except SampleInputError as e:
        _one_line(e)
        return
    g = torch.Generator().manual_seed(0)
    zs = expand_formula(text, units, {"dataset_stats": {"formula_units_hist": {"1": 1, "2": 1},
                                                        "num_atoms_hist": {"8": 1}}}, g)
    assert 1 <= len(zs) <= MAX_CELL_ATOMS
    assert all(1 <= z <= 94 for z in zs)


@FUZZ
@given(st.one_of(
    st.lists(st.sampled_from(_SYMBOLS + ["", " ", "--", ","]), max_size=6).map("-".join),
    any_text))
def test_chemical_systems(text):
    try:
        SampleSpec(chemsys=text).checked()
    except SampleInputError as e:
        _one_line(e)
        assert e.args[0].startswith("--chemsys ")


_num = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.sampled_from(["", "1e999", "-1e999", "nan", "inf", ".5", "5.", "1e-3"]))


@FUZZ
@given(st.one_of(
    st.tuples(st.sampled_from(["band_gap", "e_above_hull", "", "1x", "a.b", "a b"]),
              st.sampled_from(["=", "==", ":", "", "= "]), _num,
              st.sampled_from(["", ":", "::", " : "]), _num).map("".join),
    any_text))
def test_condition_ranges(text):
    try:
        spec = parse_condition(text)
    except ValueError as e:
        _one_line(e)
        return
    assert spec.low <= spec.high
    assert not math.isnan(spec.low) and not math.isnan(spec.high)
    if spec.is_exact:
        assert math.isfinite(spec.low)
    v = spec.draw(4, {"mean": 1.0, "std": 0.5, "min": 0.0, "max": 3.0})
    assert torch.isfinite(v).all()


@FUZZ
@given(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3),
       st.sampled_from(["auto", "cpu", "cuda", "tpu", ""]))
def test_numeric_options(guidance, steps, device):
    try:
        SampleSpec(guidance=guidance, steps=steps, device=device).checked()
    except SampleInputError as e:
        _one_line(e)
        return
    assert math.isfinite(guidance) and steps >= 1


@pytest.mark.slow
@settings(max_examples=25, deadline=None, derandomize=True)
@given(formula_like)
def test_sample_cli_never_tracebacks_on_a_formula(text):
    """The whole command (default model, 1 fast step) on fuzzed formulas: exit 0 or 2."""
    import tempfile
    from pathlib import Path

    from typer.testing import CliRunner

    from matgen.cli import app

    with tempfile.TemporaryDirectory() as d:
        res = CliRunner().invoke(app, [
            "sample", "--out", str(Path(d) / "x.extxyz"), "--composition", text or "''",
            "--steps", "1", "--sampler", "fast", "--no-progress", "--device", "cpu"])
    assert res.exit_code in (0, 2), res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(
        res.exception, SystemExit), res.output

"""issue 18: `matgen sample` shows per-step progress with an ETA off a terminal (a log file, a
pipe), resumes its count at the finished batches, and writes a zip of symmetrised CIFs beside
the extxyz with `--cif-zip`."""

from __future__ import annotations

import re
import time
import zipfile

import pytest
from ase.io import read
from typer.testing import CliRunner

import matgen.generate._generate as gen_mod
from matgen.cli import app
from matgen.generate import generate

_LINE = re.compile(r"^sample: (\d+)/(\d+) denoising steps \(\d+%\)")


def _slow_steps(monkeypatch, seconds: float) -> None:
    """Each sampler step takes at least ``seconds`` (the plain ticker then prints between
    steps, not only between batches)."""
    real = gen_mod._sampler_fn

    def sampler_fn(name):
        fn = real(name)

        def slowed(*args, callback=None, **kw):
            def cb(i, n, state):
                time.sleep(seconds)
                if callback is not None:
                    callback(i, n, state)
            return fn(*args, callback=cb, **kw)
        return slowed

    monkeypatch.setattr(gen_mod, "_sampler_fn", sampler_fn)


def _counts(text: str) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for ln in text.splitlines() if (m := _LINE.match(ln))]


def test_plain_progress_lines_move_per_sampler_step(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MATGEN_PROGRESS_SECONDS", "0.01")
    _slow_steps(monkeypatch, 0.03)
    generate(tmp_path / "g.extxyz", runs[0].checkpoint, 5, sampler="fast", steps=3,
             batch_size=2, device="cpu", progress=True, log=None)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("sample:")]
    counts = _counts(err)
    assert lines[0].startswith("sample: 0/9 denoising steps (0%)"), err  # 3 batches x 3
    assert lines[-1].startswith("sample: 9/9 denoising steps (100%), done in"), err
    done = [d for d, _ in counts]
    assert done == sorted(done) and {d for d, total in counts} >= {1, 2, 4}, err
    assert any(d % 3 and "ETA" in ln for (d, _), ln in zip(counts, lines, strict=False)), err
    # --no-progress: not a line
    generate(tmp_path / "q.extxyz", runs[0].checkpoint, 5, sampler="fast", steps=3,
             batch_size=2, device="cpu", progress=False, log=None)
    assert capsys.readouterr().err == ""


def test_a_resumed_run_counts_from_its_finished_batches(runs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "g.extxyz"
    real = gen_mod._sample_batch

    def killed_after_two(plan, k, lo, chunk, callback=None):
        if k == 2:
            raise KeyboardInterrupt
        return real(plan, k, lo, chunk, callback)

    opts = {"sampler": "fast", "steps": 2, "batch_size": 2, "device": "cpu", "log": None}
    monkeypatch.setattr(gen_mod, "_sample_batch", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        generate(out, runs[0].checkpoint, 7, progress=False, **opts)
    monkeypatch.undo()
    monkeypatch.setenv("MATGEN_PROGRESS_SECONDS", "60")
    generate(out, runs[0].checkpoint, 7, progress=True, **opts)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("sample: 4/8 denoising steps (50%)"), lines  # 2 of 4 batches
    assert lines[-1].startswith("sample: 8/8 denoising steps (100%), done in"), lines


def test_cif_zip_beside_the_extxyz(runs, tmp_path):
    from pymatgen.core import Composition
    from pymatgen.io.cif import CifParser

    out, zpath = tmp_path / "g.extxyz", tmp_path / "g.zip"
    res = CliRunner().invoke(app, [
        "sample", "--checkpoint", str(runs[0].checkpoint), "--num", "3", "--sampler", "fast",
        "--steps", "2", "--device", "cpu", "--seed", "4", "--no-progress", "--out", str(out),
        "--cif-zip", str(zpath)])
    assert res.exit_code == 0, res.output
    assert "wrote 3 symmetrised CIFs" in res.output
    frames = read(out, index=":")
    with zipfile.ZipFile(zpath) as zf:
        names = zf.namelist()
        texts = [zf.read(n).decode() for n in names]
    assert names == [f"{a.info['sample_id']}.cif" for a in frames]
    for a, text in zip(frames, texts, strict=True):
        sid = a.info["sample_id"]
        assert f"data_{sid}" in text
        assert f"# checkpoint = {a.info['checkpoint']}" in text and "# seed = 4" in text
        (s,) = CifParser.from_str(text).parse_structures(primitive=False)
        assert s.composition.reduced_formula == Composition(
            a.get_chemical_formula()).reduced_formula
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left


@pytest.mark.parametrize(("out", "zname", "words"), [
    ("x.extxyz", "x.tar", ["--cif-zip", ".zip"]),
    ("x.cif", "x.zip", ["--cif-zip", ".extxyz --out"]),
])
def test_cif_zip_usage_errors_come_first(tmp_path, out, zname, words):
    res = CliRunner().invoke(app, ["sample", "--out", str(tmp_path / out), "--no-progress",
                                   "--cif-zip", str(tmp_path / zname)])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and res.output.strip().count("\n") == 0
    assert all(w in res.output for w in words), res.output
    assert not list(tmp_path.iterdir())

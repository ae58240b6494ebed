"""Multi-batch sampling runs its requests in order of atom count (less padding in the dense
denoiser); ids, compositions and targets stay with their request, ``sample_structures`` keeps
request order, a one-batch plan is unchanged and a killed run still resumes exactly."""

from __future__ import annotations

import pytest
from ase.io import read
from pymatgen.core import Composition

import matgen.generate._generate as gen_mod
from matgen.generate import generate, plan_sampling, sample_structures
from matgen.generate._spec import SampleSpec

# mixed sizes in input order: 5, 2, 8, 5, 2, 3 atoms (num=1 each)
FORMULAS = ["SrTiO3", "NaCl", "Na4Cl4", "SrTiO3", "NaCl", "NaCl2"]
SIZES = [5, 2, 8, 5, 2, 3]


def _opts(**kw):
    return {"sampler": "fast", "steps": 2, "seed": 3, "device": "cpu", "task": "csp",
            "compositions": FORMULAS, "formula_units": "as-written", "batch_size": 2, **kw}


def _csv(tmp_path):
    path = tmp_path / "comps.csv"
    rows = "".join(f"mp-{i},{f}\n" for i, f in enumerate(FORMULAS))
    path.write_text("material_id,formula\n" + rows)
    return path


def _batches(monkeypatch):
    """Record the atom counts of each batch the sampler gets."""
    seen: list[list[int]] = []
    real = gen_mod._sample_batch

    def spy(plan, k, lo, chunk, callback=None):
        seen.append([r.num_atoms for r in chunk])
        return real(plan, k, lo, chunk, callback)

    monkeypatch.setattr(gen_mod, "_sample_batch", spy)
    return seen


def test_multi_batch_runs_sorted_by_size_with_ids_and_compositions_attached(
        runs, tmp_path, monkeypatch):
    seen = _batches(monkeypatch)
    out = tmp_path / "csp.extxyz"
    opts = _opts(compositions=[], compositions_from=_csv(tmp_path))
    generate(out, runs[0].checkpoint, 1, progress=False, log=None, **opts)
    assert seen == [[2, 2], [3, 5], [5, 8]]  # stable: ties keep input order
    frames = read(out, index=":")
    assert [len(a) for a in frames] == [2, 2, 3, 5, 5, 8]  # the file is in batch order
    for a in frames:
        i = int(a.info["sample_id"].rsplit("-", 1)[1])
        assert a.info["material_id"] == f"mp-{i}"  # the input row
        assert len(a) == SIZES[i]
        want = Composition(FORMULAS[i])
        assert Composition(a.info["composition"]) == want
        assert Composition(a.get_chemical_formula()) == want  # the atoms generated
    assert sorted(int(a.info["sample_id"].rsplit("-", 1)[1]) for a in frames) == list(range(6))


def test_targets_stay_with_their_request(runs):
    """De novo with a drawn range target: each frame's target is the value drawn for its
    input-order request, whatever batch it ran in."""
    ckpt = runs[0].checkpoint
    kw = {"sampler": "fast", "steps": 2, "seed": 5, "device": "cpu", "batch_size": 3,
          "conditions": ["band_gap=0:4"]}
    plan = plan_sampling(SampleSpec(checkpoint=ckpt, num=12, **kw), lambda _m: None)
    drawn = plan.values["band_gap"].tolist()
    sizes = [r.num_atoms for r in plan.requests]
    assert len(set(sizes)) > 1 and sizes != sorted(sizes)  # the sort matters here
    got = {}
    for item in gen_mod.sample_batches(plan):
        for j, i in enumerate(item.index):
            got[i] = (item.info["target_band_gap"][j], item.requests[j].num_atoms,
                      item.info["sample_id"][j], int(item.crystals.num_atoms[j]))
    assert sorted(got) == list(range(12))
    for i, (t, n, sid, n_out) in got.items():
        assert t == pytest.approx(drawn[i])
        assert n == n_out == sizes[i]
        assert sid.endswith(f"-{i}")


def test_sample_structures_keeps_request_order(runs, monkeypatch):
    seen = _batches(monkeypatch)
    structs = sample_structures(1, runs[0].checkpoint, **_opts())
    assert seen == [[2, 2], [3, 5], [5, 8]]
    assert [len(s) for s in structs] == SIZES
    assert [s.properties["sample_id"].rsplit("-", 1)[1] for s in structs] == [
        str(i) for i in range(6)]
    assert [s.composition.reduced_formula for s in structs] == [
        "SrTiO3", "NaCl", "NaCl", "SrTiO3", "NaCl", "NaCl2"]


def test_one_batch_plans_keep_input_order(runs, tmp_path, monkeypatch):
    seen = _batches(monkeypatch)
    out = tmp_path / "one.extxyz"
    generate(out, runs[0].checkpoint, 1, progress=False, log=None, **_opts(batch_size=6))
    assert seen == [SIZES]
    frames = read(out, index=":")
    assert [len(a) for a in frames] == SIZES
    assert [a.info["sample_id"].rsplit("-", 1)[1] for a in frames] == [str(i) for i in range(6)]
    plan = plan_sampling(SampleSpec(checkpoint=runs[0].checkpoint, num=1, **_opts(batch_size=6)),
                         lambda _m: None)
    assert gen_mod.batch_order(plan) == list(range(6))
    plan1 = plan_sampling(SampleSpec(checkpoint=runs[0].checkpoint, num=1, **_opts(batch_size=1)),
                          lambda _m: None)
    assert gen_mod.batch_order(plan1) == list(range(6))  # batches of one gain nothing


def test_the_fingerprint_covers_the_batch_order(runs, monkeypatch):
    plan = plan_sampling(SampleSpec(checkpoint=runs[0].checkpoint, num=1, **_opts()),
                         lambda _m: None)
    fp = gen_mod.plan_fingerprint(plan)
    monkeypatch.setattr(gen_mod, "batch_order", lambda p: list(range(len(p.requests))))
    assert gen_mod.plan_fingerprint(plan) != fp


class _Killed(Exception):
    pass


def test_a_killed_multi_batch_run_resumes_to_the_same_frames(runs, tmp_path, monkeypatch):
    ckpt = runs[0].checkpoint
    ref = tmp_path / "ref.extxyz"
    generate(ref, ckpt, 1, progress=False, log=None, **_opts())
    out = tmp_path / "gen.extxyz"
    real = gen_mod._sample_batch
    calls: list[int] = []

    def crash(plan, k, lo, chunk, callback=None):
        if k == 2:
            raise _Killed
        calls.append(k)
        return real(plan, k, lo, chunk, callback)

    monkeypatch.setattr(gen_mod, "_sample_batch", crash)
    with pytest.raises(_Killed):
        generate(out, ckpt, 1, progress=False, log=None, **_opts())
    monkeypatch.undo()
    seen = _batches(monkeypatch)
    notes: list[str] = []
    generate(out, ckpt, 1, progress=False, log=notes.append, **_opts())
    assert calls == [0, 1] and seen == [[5, 8]]  # only the last batch is redone
    assert any("resuming" in n for n in notes)
    assert out.read_text() == ref.read_text()

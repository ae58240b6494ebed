"""CSP by consensus (``--consensus K``): each answer is the candidate of its composition that the
most other candidates match, picked from exactly the samples a plain ``--num K`` run draws."""

from __future__ import annotations

import pytest
from ase.io import read
from pymatgen.core import Lattice, Structure

from matgen.generate import SampleInputError, generate, sample_structures
from matgen.generate._consensus import POOL_MIN_ANSWERS, consensus_pick, votes, votes_of_groups

FORMULAS = ["SrTiO3", "NaCl", "Na2Cl2"]


def _rocksalt(a: float) -> Structure:
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _layered(c: float = 9.0) -> Structure:
    return Structure(Lattice.tetragonal(3.0, c), ["Na", "Cl"], [[0, 0, 0], [0, 0, 0.31]])


def test_pick_takes_the_most_matched_candidate_and_counts_its_votes():
    cands = [_layered(), _rocksalt(5.6), _layered(9.1), _rocksalt(5.65), _rocksalt(5.62)]
    assert consensus_pick(cands) == (1, 2)  # three rock-salt cells agree; two layered ones
    assert consensus_pick([_layered(), _rocksalt(5.6)]) == (0, 0)  # a tie: the earlier one


def test_pick_skips_candidates_marked_unusable_unless_all_are():
    assert consensus_pick([None, _rocksalt(5.6), _rocksalt(5.7)]) == (1, 1)
    assert consensus_pick([None, None]) == (0, 0)


def test_votes_in_a_process_pool_are_the_serial_votes():
    groups = [
        [_layered(9.0 + i / 100), _rocksalt(5.6), None, _rocksalt(5.6 + i / 200), _layered()]
        for i in range(POOL_MIN_ANSWERS)
    ]
    serial = [votes(g) for g in groups]
    assert votes_of_groups(groups, workers=2) == serial  # in a pool of 2 worker processes
    assert votes_of_groups(groups[:3], workers=2) == serial[:3]  # few answers: no pool


def _opts(**kw):
    return {"sampler": "fast", "steps": 2, "seed": 5, "device": "cpu", "task": "csp",
            "compositions": FORMULAS, "batch_size": 7, **kw}


def test_answers_come_from_the_plain_runs_candidates(runs, tmp_path):
    ck = runs[0].checkpoint
    k = 4
    # the consensus run rounds batch_size 7 to 8 (whole groups per batch): a plain run with
    # batch_size 8 and num K draws exactly its candidates
    plain = generate(tmp_path / "plain.extxyz", ck, k, progress=False, log=None,
                     **_opts(batch_size=8))
    cands = {int(a.info["sample_id"].rsplit("-", 1)[1]): a for a in read(plain.path, ":")}
    res = generate(tmp_path / "cons.extxyz", ck, 1, progress=False, log=None,
                   **_opts(consensus=k))
    frames = read(res.path, ":")
    assert res.num_structures == len(frames) == len(FORMULAS)
    seen = set()
    for a in frames:
        g = int(a.info["sample_id"].rsplit("-", 1)[1])
        seen.add(g)
        assert a.info["consensus_k"] == k and 0 <= a.info["consensus_votes"] <= k - 1
        j = a.info["consensus_candidate"]
        src = cands[g * k + j]
        assert a.info["composition"] == src.info["composition"] == FORMULAS[g]
        assert (a.positions == pytest.approx(src.positions, abs=1e-5))
        group = [cands[g * k + i] for i in range(k)]
        from pymatgen.io.ase import AseAtomsAdaptor

        want = consensus_pick([AseAtomsAdaptor.get_structure(c) for c in group])
        assert (j, a.info["consensus_votes"]) == want
    assert seen == {0, 1, 2}


def test_memory_api_keeps_request_order_and_num_answers_per_row(runs):
    got = sample_structures(2, runs[0].checkpoint, **_opts(consensus=3))
    assert [s.properties["composition"] for s in got] == [f for f in FORMULAS for _ in (0, 1)]
    assert [int(s.properties["sample_id"].rsplit("-", 1)[1]) for s in got] == list(range(6))
    assert all(s.properties["consensus_k"] == 3 for s in got)


def test_consensus_is_refused_de_novo_and_below_two(runs, tmp_path):
    with pytest.raises(SampleInputError, match="applies to CSP"):
        generate(tmp_path / "x.extxyz", runs[0].checkpoint, 4, progress=False, log=None,
                 sampler="fast", steps=2, device="cpu", consensus=3)
    with pytest.raises(SampleInputError, match=">= 2"):
        generate(tmp_path / "y.extxyz", runs[0].checkpoint, 1, progress=False, log=None,
                 **_opts(consensus=1))


def test_select_by_energy_takes_the_lowest_energy_and_still_reports_its_votes(runs, tmp_path):
    ck, k = runs[0].checkpoint, 4
    plain = generate(tmp_path / "plain.extxyz", ck, k, progress=False, log=None,
                     **_opts(batch_size=8))
    cands = {int(a.info["sample_id"].rsplit("-", 1)[1]): a for a in read(plain.path, ":")}
    calls = []

    def volume_energy(structures):  # a stand-in MLIP: the denser the cell, the lower
        calls.append(len(structures))
        return [s.volume / len(s) for s in structures]

    res = generate(tmp_path / "e.extxyz", ck, 1, progress=False, log=None,
                   energies=volume_energy, **_opts(consensus=k, select_by="fake"))
    assert calls and sum(calls) <= len(FORMULAS) * k
    from pymatgen.io.ase import AseAtomsAdaptor

    for a in read(res.path, ":"):
        g = int(a.info["sample_id"].rsplit("-", 1)[1])
        group = [AseAtomsAdaptor.get_structure(cands[g * k + i]) for i in range(k)]
        vols = [s.volume / len(s) for s in group]
        j = a.info["consensus_candidate"]
        assert vols[j] == pytest.approx(min(vols), rel=1e-5)
        assert a.info["consensus_energy"] == pytest.approx(min(vols), rel=1e-5)
        others = [s for i, s in enumerate(group) if i != j]
        from matgen.generate._consensus import votes

        assert a.info["consensus_votes"] == votes([group[j], *others])[0]


def test_select_by_an_mlip_needs_consensus_and_an_energy_function(runs, tmp_path):
    with pytest.raises(SampleInputError, match="give --consensus"):
        generate(tmp_path / "x.extxyz", runs[0].checkpoint, 1, progress=False, log=None,
                 **_opts(select_by="chgnet"))
    with pytest.raises(SampleInputError, match="no energy function"):
        generate(tmp_path / "y.extxyz", runs[0].checkpoint, 1, progress=False, log=None,
                 **_opts(consensus=2, select_by="chgnet"))


def test_candidates_of_an_answer_share_one_drawn_cell(runs, tmp_path, monkeypatch):
    # formula_units="auto" draws a cell per request; an answer's K candidates must share it,
    # or the size-sorted batches would split them (two answers with one sample_id). The tiny
    # model saw only Z = 1: let it draw NaCl's Z from {1, 2}.
    import torch

    import matgen.generate._requests as req

    monkeypatch.setattr(req, "_units_weights", lambda meta: ([1, 2], torch.tensor([1.0, 1.0])))
    res = generate(tmp_path / "auto.extxyz", runs[0].checkpoint, 3, progress=False, log=None,
                   **_opts(formula_units="auto", consensus=3, batch_size=6))
    frames = read(res.path, ":")
    ids = [a.info["sample_id"] for a in frames]
    assert len(frames) == res.num_structures == 3 * len(FORMULAS) and len(set(ids)) == len(ids)
    assert all(a.info["consensus_candidate"] in (0, 1, 2) for a in frames)
    assert {len(a) for a in frames if a.info["composition"] != "SrTiO3"} == {2, 4}

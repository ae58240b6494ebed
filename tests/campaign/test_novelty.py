"""Validity and novelty of generated candidates (the crystal layer's checks, structure matching)."""

from __future__ import annotations

from pymatgen.core import Lattice, Structure

from matgen.campaign import CandidateRow
from matgen.campaign._novelty import novelty_verdicts, validity_reason


def _nacl(a: float = 5.6) -> Structure:
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _row(cid: str, s: Structure) -> CandidateRow:
    return CandidateRow(
        id=cid,
        campaign_id=1,
        round_index=0,
        position=0,
        source_id=None,
        formula="NaCl",
        reduced_formula="NaCl",
        spacegroup=None,
        cif=s.to(fmt="cif"),
        status="generated",
        reason=None,
        scores=None,
        selected=False,
        selected_round=None,
        rank=None,
        acq_value=None,
    )


def test_generated_crystals_pass_the_crystal_layers_checks():
    assert validity_reason(_nacl()) is None
    close = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    assert "apart (< 0.5 Å" in validity_reason(close)
    assert "> 200 Å^3 per atom" in validity_reason(_nacl(a=9.0))  # 364 Å^3 per atom
    assert "near-zero cell volume" in validity_reason(_nacl(a=1.0))


def test_duplicates_of_training_earlier_rounds_and_this_round_are_named():
    train = {"NaCl": [_nacl().to(fmt="cif")]}
    verdicts = novelty_verdicts([_row("a", _nacl())], [], train)
    assert verdicts == [("a", "duplicate", "matches a training structure")]
    kcl = Structure(Lattice.cubic(6.3), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rows = [_row("b", kcl), _row("c", kcl)]
    rows = [CandidateRow.from_mapping({**r, "reduced_formula": "KCl"}) for r in rows]
    earlier = [CandidateRow.from_mapping({**_row("old", _nacl(a=9.0)), "reduced_formula": "X"})]
    assert novelty_verdicts(rows, earlier, {}) == [
        ("b", "generated", None),
        ("c", "duplicate", "matches b"),
    ]
    seen = [CandidateRow.from_mapping({**_row("old", kcl), "reduced_formula": "KCl"})]
    assert [v[2] for v in novelty_verdicts(rows, seen, {})] == ["matches old", "matches old"]

"""A generated crystal with two atoms on one spot has no CIF that reads back (pymatgen merges
them into one over-occupied site and refuses the file). It is dropped with a warning at
generation; the round goes on with the others (it once stopped the demo campaign)."""

from __future__ import annotations

from types import SimpleNamespace

from pymatgen.core import Lattice, Structure


class _Gen:
    def __call__(self, n, conditions, chemsys, seed):
        good = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        bad = Structure(Lattice.cubic(4.2), ["Na", "Na", "Cl"],
                        [[0, 0, 0], [0, 0, 0], [0.5, 0.5, 0.5]])
        structures = [good, bad, good.copy()][:n]
        return SimpleNamespace(ids=[f"g{i}" for i in range(len(structures))],
                               to_structures=lambda: structures)


def test_a_crystal_whose_cif_does_not_read_back_is_dropped(toy_config, caplog):
    from matgen.campaign import Campaign, load_config

    cfg = load_config(toy_config)
    camp = Campaign(cfg, generator=_Gen())
    with caplog.at_level("WARNING", logger="matgen.campaign"):
        rows = camp.generate_chunk(3, 0, {})
    assert [r["source_id"] for r in rows] == ["g0", "g2"]
    assert "g1" in caplog.text and "atoms coincide" in caplog.text
    camp.store.ensure_round(0, cfg.round_seed(0))
    camp.commit_generated(0, [rows])
    assert len(camp.store.candidates(0)) == 2

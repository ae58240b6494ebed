"""CSP by consensus: one answer per composition chosen from K samples of it.

The generator's samples of one composition fall into a few structure types; the type it
returns most often is more often the right one than a single sample, and how many samples agree
says how far to trust it. :func:`consensus_pick` takes the K candidates of one composition and
returns the one that pymatgen's ``StructureMatcher`` (its default tolerances: ``ltol`` 0.2,
``stol`` 0.3, ``angle_tol`` 5) finds equal to the most other candidates, with that count (its
votes, 0 .. K - 1). Candidates with two atoms closer than the validator's minimum distance
(0.5 Å) take no part unless every candidate has them. Ties go to the earlier candidate.

Measured on the shipped default (2026-12-04, 2-core CPU, fast 50 steps, seed 1, K = 10, val
rows 0-599; ``benchmarks/csp_select.py``, ``benchmarks/results/csp_select_val600_cpu.json``): one
sample 48.5% match / RMSE 0.096; the vote 51.3% / 0.076; the lowest CHGNet single-point energy
(``--select-by chgnet``) 55.5% / 0.062; best of 10 (needs the answer) 66.7% / 0.080. Answers
with 6 or more votes of 9 matched 76% of the time, those with none 8%.
"""

from __future__ import annotations

import atexit
import math
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

#: answers per batch from which the votes run in a process pool (below it the pool's start-up,
#: ~2 s a worker, costs more than one core saves); workers: matgen.crystal.default_workers
POOL_MIN_ANSWERS = 64
_POOL: dict = {}


@lru_cache(maxsize=1)
def _matcher():
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher()


def votes(structures: Sequence) -> dict[int, int]:
    """``{index: how many other candidates match it}`` over the usable candidates (those not
    ``None``)."""
    ok = [i for i, s in enumerate(structures) if s is not None]
    sm = _matcher()
    count = dict.fromkeys(ok, 0)
    for pos, i in enumerate(ok):
        for j in ok[pos + 1:]:
            try:
                same = sm.fit(structures[i], structures[j])
            except Exception:  # noqa: BLE001 - a matcher failure means "not shown equal"
                same = False
            if same:
                count[i] += 1
                count[j] += 1
    return count


def _pool(workers: int):
    """One process pool for the run (:func:`matgen._pool.process_pool`), kept across batches."""
    if _POOL.get("workers") != workers:
        from matgen._pool import process_pool

        if _POOL:
            _POOL["executor"].shutdown()
        _POOL.update(workers=workers, executor=process_pool(workers))
        atexit.register(_POOL["executor"].shutdown)
    return _POOL["executor"]


def votes_of_groups(groups: list[list], workers: int | None = None) -> list[dict[int, int]]:
    """:func:`votes` of every group of candidates; with many groups (:data:`POOL_MIN_ANSWERS`)
    and several cores, in a process pool (the same numbers, in order). At K = 10 one core takes
    about 0.1 s an answer, far slower than a GPU samples them."""
    if workers is None:
        from matgen.crystal import default_workers

        workers = default_workers()
    if workers < 2 or len(groups) < POOL_MIN_ANSWERS:
        return [votes(g) for g in groups]
    chunk = max(1, len(groups) // (4 * workers))
    return list(_pool(workers).map(votes, groups, chunksize=chunk))


def consensus_pick(structures: Sequence) -> tuple[int, int]:
    """``(index, votes)``: the candidate that the most others match and how many do.

    Args:
        structures: the K candidates of one composition as pymatgen ``Structure`` objects,
            ``None`` for a candidate that takes no part (atoms too close).
    """
    count = votes(structures)
    best = _most_voted(count)
    return best, count.get(best, 0)


def _most_voted(count: dict[int, int]) -> int:
    """The index with the most votes (ties: the earlier; 0 when nothing was usable)."""
    return max(count, key=lambda i: (count[i], -i)) if count else 0


def pick_answers(k: int, chunk: list, crystals, info: dict[str, list], index: list[int],
                 unusable: list[bool], id_prefix: str, energies=None):
    """One answer per group of ``k`` consecutive requests of a sampled batch (the candidates of
    one composition, all in this batch): the candidate :func:`consensus_pick` chooses, the
    ``unusable`` ones (atoms too close) left out of the vote; with ``energies`` (structures ->
    energies per atom) the usable candidate of lowest energy instead (the vote when none has
    a finite energy).

    Args:
        k: candidates per answer.
        chunk, crystals, info, index: the batch's requests, crystals (CPU
            :class:`matgen.crystal.CrystalBatch`), per-frame info lists and input-order request
            indices (request ``i`` belongs to answer ``i // k``).
        unusable: per crystal, left out of the vote.
        id_prefix: the answers' ``sample_id`` is ``{id_prefix}-{answer index}``.

    Returns:
        ``(chunk, crystals, info, index)`` of the answers; ``info`` adds ``consensus_k``,
        ``consensus_votes`` (candidates matching the answer, of ``k - 1``: the vote is taken
        either way, a confidence), ``consensus_candidate`` (the answer's place among its
        ``k``) and, with ``energies``, ``consensus_energy`` (the answer's, eV/atom; NaN
        when it came from the vote).
    """
    structures = crystals.to_structures()
    groups: dict[int, list[int]] = {}
    for pos, i in enumerate(index):
        groups.setdefault(i // k, []).append(pos)
    energy = [math.nan] * len(structures)
    if energies is not None:
        usable = [p for p in range(len(structures)) if not unusable[p]]
        for p, e in zip(usable, energies([structures[p] for p in usable]), strict=True):
            energy[p] = float(e)
    keep, n_votes, places = [], [], []
    counts = votes_of_groups(
        [[None if unusable[p] else structures[p] for p in members] for members in groups.values()]
    )
    for members, count in zip(groups.values(), counts, strict=True):
        finite = [(energy[p], pos) for pos, p in enumerate(members) if math.isfinite(energy[p])]
        j = min(finite)[1] if finite else _most_voted(count)  # its votes: a confidence
        keep.append(members[j])
        n_votes.append(count.get(j, 0))
        places.append(index[members[j]] % k)
    info = {key: [vals[p] for p in keep] for key, vals in info.items()}
    if energies is not None:
        info["consensus_energy"] = [energy[p] for p in keep]
    info["sample_id"] = [f"{id_prefix}-{g}" for g in groups]
    info["consensus_k"] = [k] * len(keep)
    info["consensus_votes"] = n_votes
    info["consensus_candidate"] = places
    chunk = [chunk[p] for p in keep]
    ids = [r.material_id or sid for r, sid in zip(chunk, info["sample_id"], strict=True)]
    return chunk, replace(crystals[keep], ids=ids), info, list(groups)

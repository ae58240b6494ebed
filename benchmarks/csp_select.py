"""One CSP answer out of K candidates per composition: how much of the best-of-K gap a selector
closes without seeing the reference.

The generator's CSP match@1 scores one sample per composition; best of K scores the closest of
K (an oracle: it needs the answer). A user with K candidates has to hand one structure on. This
benchmark scores selectors that use only the candidates:

- ``first``: the first candidate of each composition (what one sample gives);
- ``consensus``: ``matgen sample --consensus K``'s choice (:func:`matgen.generate.consensus_pick`:
  the candidate pymatgen's StructureMatcher, default tolerances, finds equal to the most other
  candidates; ties: the earlier one; structurally invalid ones only when all are);
- ``energy``: the lowest MLIP energy per atom after ``matgen score`` (its relaxation, or
  ``--no-relax``); frames the MLIP could not score are skipped. Scored twice: the chosen
  candidate as generated (the selection alone) and as relaxed (the pipeline);
- ``best``: ``matgen evaluate`` on all K (best of K, the ceiling).

Each selection is written as an extxyz of one frame per composition and scored with ``matgen
evaluate --task csp`` (the same command as every CSP number in the README).

    python benchmarks/csp_select.py --generated val200_k10.extxyz --reference val200.csv \\
        --mlip chgnet --device cpu --workers 2 --out benchmarks/results/csp_select_val200_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from multiprocessing import Pool
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from csp_relax import _run  # the benchmarks run matgen commands one way

KEYS = ("match_rate", "rmse", "num_matched", "num_references", "num_generated_frames",
        "generated_validity", "k")


def evaluate(gen: Path, ref: Path, workers: int) -> dict:
    """``matgen evaluate --task csp`` on ``gen``; the summary's main numbers."""
    out = gen.with_suffix(".csp.json")
    _run([sys.executable, "-m", "matgen", "evaluate", "--task", "csp", "--generated", str(gen),
          "--reference", str(ref), "--workers", str(workers), "--out", str(out)])
    m = json.loads(out.read_text())
    return {k: m.get(k) for k in KEYS}


def groups(frames) -> dict[str, list[int]]:
    """Frame indices per reference ``material_id``, in file order."""
    g: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(frames):
        g[str(a.info.get("material_id"))].append(i)
    return dict(g)


def _consensus_job(atoms_list) -> int:
    """``matgen sample --consensus``'s choice among one composition's candidates (its vote, with
    its own test of which candidates take part: :func:`matgen.crystal.too_close`)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from matgen.crystal import CrystalBatch, too_close
    from matgen.generate import consensus_pick

    structures = [AseAtomsAdaptor.get_structure(a) for a in atoms_list]
    close = too_close(CrystalBatch.from_structures(structures))
    return consensus_pick([None if c else s for s, c in zip(structures, close, strict=True)])[0]


def energy_pick(ids: list[str], energies: dict[str, float]) -> int | None:
    """Index of the lowest energy per atom among ``ids`` (missing / NaN skipped); None if none."""
    scored = [(energies[s], i) for i, s in enumerate(ids)
              if s in energies and energies[s] == energies[s]]
    return min(scored)[1] if scored else None


def _write(frames, path: Path) -> Path:
    from ase.io import write

    write(path, frames, format="extxyz")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generated", type=Path, required=True,
                    help="K CSP candidates per reference (extxyz from matgen sample --num K)")
    ap.add_argument("--reference", type=Path, required=True, help="the references (CDVAE CSV)")
    ap.add_argument("--mlip", default="chgnet", help="matgen score --mlip (none: skip energy)")
    ap.add_argument("--no-relax", action="store_true", help="single-point energies")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the selections and scores (default: beside --generated)")
    ap.add_argument("--out", type=Path, required=True, help="results JSON")
    a = ap.parse_args(argv)
    from ase.io import read

    work = a.work or a.generated.parent
    work.mkdir(parents=True, exist_ok=True)
    stem = a.generated.stem
    frames = read(a.generated, index=":")
    g = groups(frames)
    k = sorted({len(v) for v in g.values()})
    res: dict = {"what": __doc__.splitlines()[0], "generated": str(a.generated),
                 "reference": str(a.reference), "candidates_per_reference": k,
                 "num_references_with_candidates": len(g)}
    res["best_of_k"] = evaluate(a.generated, a.reference, a.workers)
    first = [frames[v[0]] for v in g.values()]
    res["first"] = evaluate(_write(first, work / f"{stem}.first.extxyz"), a.reference, a.workers)

    t0 = time.time()
    with Pool(a.workers) as pool:
        picks = pool.map(_consensus_job, [[frames[i] for i in v] for v in g.values()],
                         chunksize=4)
    chosen = [frames[v[p]] for v, p in zip(g.values(), picks, strict=True)]
    res["consensus"] = evaluate(_write(chosen, work / f"{stem}.consensus.extxyz"), a.reference,
                                a.workers)
    res["consensus"]["seconds"] = round(time.time() - t0, 1)
    res["consensus"]["picked_first"] = sum(p == 0 for p in picks)

    if a.mlip != "none":
        scores = work / f"{stem}.{a.mlip}.scores.csv"
        relaxed = work / f"{stem}.{a.mlip}_relaxed.extxyz"
        cmd = [sys.executable, "-m", "matgen", "score", "--in", str(a.generated), "--out",
               str(scores), "--mlip", a.mlip, "--device", a.device]
        cmd += ["--no-relax"] if a.no_relax else ["--relaxed-out", str(relaxed)]
        secs = _run(cmd, ok=(0, 1))  # 1: some frames unreadable (too-close atoms), rest scored
        table = pd.read_csv(scores)
        energies = dict(zip(table["sample_id"].astype(str), table["energy_per_atom"],
                            strict=True))
        by_id = {}
        if not a.no_relax and relaxed.exists():
            by_id = {str(r.info.get("sample_id")): r for r in read(relaxed, index=":")}
        sel, sel_relaxed = [], []
        for v in g.values():
            ids = [str(frames[i].info.get("sample_id")) for i in v]
            p = energy_pick(ids, energies)
            if p is None:
                continue
            sel.append(frames[v[p]])
            if ids[p] in by_id:
                sel_relaxed.append(by_id[ids[p]])
        key = f"energy_{a.mlip}" + ("_single_point" if a.no_relax else "_relaxed")
        res[key] = {"score_command": " ".join(cmd[1:]), "score_seconds": secs,
                    "as_generated": evaluate(_write(sel, work / f"{stem}.{key}.extxyz"),
                                             a.reference, a.workers)}
        if sel_relaxed:
            res[key]["as_relaxed"] = evaluate(
                _write(sel_relaxed, work / f"{stem}.{key}.relaxed.extxyz"), a.reference,
                a.workers)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

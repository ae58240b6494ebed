"""How much of the generator's CSP match is generalisation: the same model and sampler on random
rows of its own training split and of the val split, val rows split by whether their reduced
formula (or chemical system) occurs in train, and whether a val miss is a training polymorph.

Runs the commands a user runs (``matgen sample --task csp`` then ``matgen evaluate --task csp``)
on ``--rows`` random rows of each split (one sample each), the two splits side by side in one
process each. Then, for every val row whose formula occurs in train and that is unmatched or
loosely matched (RMS > 0.2), pymatgen's StructureMatcher (the evaluation's tolerances) asks
whether the generated crystal is one of the train crystals with that formula.

    python benchmarks/csp_train_val_gap.py --data-dir ../shared/datasets/mp20_reduced --rows 300 \
        --seed 0 --out benchmarks/results/csp_train_val_gap_cpu.json

With ``--table PER_STRUCTURE.csv --split-csv SPLIT.csv`` it samples nothing and analyses an existing
``matgen evaluate --per-structure`` table instead: match and RMSE by how familiar each row's
chemistry is (formula in train, chemical system only, unseen), overall and per number of elements,
and the log-odds of a match for the first two adjusted for size, elements and symmetry.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

LOOSE = 0.2


def _formula_keys(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Reduced formula and chemical system of each row of a CDVAE-style CSV."""
    from pymatgen.core import Composition

    comps = [Composition(f) for f in frame["pretty_formula"]]
    return (pd.Series([c.reduced_formula for c in comps], index=frame.index),
            pd.Series(["-".join(sorted(e.symbol for e in c.elements)) for c in comps],
                      index=frame.index))


def num_elements(chemsys: pd.Series) -> pd.Series:
    """Number of elements of each chemical system ``A-B-C`` of :func:`_formula_keys`."""
    return chemsys.str.count("-") + 1


def split_summary(per: pd.DataFrame) -> dict:
    """Match rate, RMSE over matches, and the loose matches' share of a per-structure table."""
    m = per["matched"].eq(True)
    rms = per.loc[m, "rms_dist"].astype(float)
    out = {"rows": len(per), "matched": int(m.sum()),
           "match_rate": float(m.mean()) if len(per) else 0.0,
           "rmse": float(rms.mean()) if len(rms) else None,
           "loose": int((rms > LOOSE).sum())}
    out["tight_rms_mean"] = float(rms[rms <= LOOSE].mean()) if (rms <= LOOSE).any() else None
    return out


def grouped(per: pd.DataFrame, key: pd.Series) -> dict:
    """``split_summary`` of the rows where ``key`` is True and where it is False."""
    k = key.reindex(per.index).fillna(False).astype(bool)
    return {"seen": split_summary(per[k]), "unseen": split_summary(per[~k])}


def familiarity(formula: pd.Series, chemsys: pd.Series, f_train: pd.Series,
                s_train: pd.Series) -> pd.Series:
    """Per row: ``formula seen`` (its reduced formula is in train), ``chemsys seen only`` (its
    chemical system is, the formula not) or ``chemsys unseen``."""
    cls = pd.Series("chemsys unseen", index=formula.index)
    cls[chemsys.isin(set(s_train))] = "chemsys seen only"
    cls[formula.isin(set(f_train))] = "formula seen"
    return cls


def by_familiarity(per: pd.DataFrame, cls: pd.Series, n_elements: pd.Series) -> dict:
    """``split_summary`` per familiarity class, overall and within each number of elements
    (the classes differ in how many elements their rows have)."""
    cls = cls.reindex(per.index)
    ne = n_elements.reindex(per.index)
    out = {c: split_summary(per[cls == c]) for c in sorted(cls.dropna().unique())}
    out["by_num_elements"] = {
        str(int(k)): {c: split_summary(per[(ne == k) & (cls == c)])
                      for c in sorted(cls[ne == k].dropna().unique())}
        for k in sorted(ne.dropna().unique())}
    return out


def logistic_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Maximum-likelihood logistic regression (intercept first, then one coefficient per
    column of ``x``)."""
    from scipy.optimize import minimize

    a = np.column_stack([np.ones(len(x)), x])

    def nll(w):
        t = a @ w
        return float(np.sum(np.logaddexp(0.0, t) - y * t)), a.T @ (1.0 / (1.0 + np.exp(-t)) - y)

    return minimize(nll, np.zeros(a.shape[1]), jac=True, method="L-BFGS-B").x


def adjusted_effects(per: pd.DataFrame, cls: pd.Series, split: pd.DataFrame, n_el: pd.Series,
                     boot: int = 200, seed: int = 0) -> dict:
    """Log-odds of a match for ``formula seen`` and ``chemsys seen only`` (vs unseen), adjusted
    for the number of elements, of atoms, and the symmetry (log space-group number, cubic,
    hexagonal/trigonal), with 95% bootstrap intervals over the rows."""
    from pymatgen.core import Structure

    idx = per.index
    sg = split.loc[idx, "spacegroup.number"].astype(float)
    nat = pd.Series([len(Structure.from_str(c, fmt="cif")) for c in split.loc[idx, "cif"]],
                    index=idx)
    x = pd.DataFrame({"formula_seen": cls[idx].eq("formula seen"),
                      "chemsys_seen_only": cls[idx].eq("chemsys seen only"),
                      "num_elements": n_el[idx], "num_atoms": nat, "log_spacegroup": np.log(sg),
                      "cubic": sg >= 195, "hexagonal_trigonal": (sg >= 143) & (sg < 195)}
                     ).astype(float).to_numpy()
    y = per["matched"].eq(True).astype(float).to_numpy()
    names = ["formula_seen", "chemsys_seen_only", "num_elements", "num_atoms",
             "log_spacegroup", "cubic", "hexagonal_trigonal"]
    w = logistic_fit(x, y)[1:]
    rng = np.random.default_rng(seed)
    draws = np.array([logistic_fit(x[i], y[i])[1:]
                      for i in (rng.integers(0, len(y), len(y)) for _ in range(boot))])
    lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
    return {n: {"log_odds": round(float(w[k]), 3), "ci95": [round(float(lo[k]), 3),
                                                             round(float(hi[k]), 3)]}
            for k, n in enumerate(names)}


def table_mode(args) -> dict:
    """The familiarity breakdown of an existing per-structure table (``matgen evaluate
    --per-structure``) of the split ``--split-csv``."""
    train = pd.read_csv(args.data_dir / "train.csv").set_index("material_id")
    split = pd.read_csv(args.split_csv).set_index("material_id")
    per = pd.read_csv(args.table).set_index("material_id")
    f_train, s_train = _formula_keys(train)
    f, s = _formula_keys(split)
    n_el = num_elements(s)
    cls = familiarity(f, s, f_train, s_train)
    return {"table": str(args.table), "split_csv": str(args.split_csv),
            "all": split_summary(per), "by_familiarity": by_familiarity(per, cls, n_el),
            "adjusted_log_odds_of_a_match": adjusted_effects(per, cls, split, n_el)}


def _run(cmd: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def _sample_and_score(work: Path, splits: dict[str, Path], args) -> dict[str, pd.DataFrame]:
    py = [sys.executable, "-m", "matgen"]
    procs = []
    for name, csv in splits.items():
        cmd = py + ["sample", "--task", "csp", "--num", "1", "--compositions-from", str(csv),
                    "--sampler", "fast", "--steps", str(args.steps), "--seed", str(args.seed),
                    "--device", args.device, "--no-progress", "--out", str(work / f"{name}.extxyz")]
        if args.checkpoint:
            cmd += ["--checkpoint", str(args.checkpoint)]
        procs.append(_run(cmd, work / f"sample_{name}.log"))
    if any(p.wait() for p in procs):
        raise SystemExit(f"error: matgen sample failed (logs in {work})")
    procs = [_run(py + ["evaluate", "--task", "csp", "--generated", str(work / f"{n}.extxyz"),
                        "--reference", str(csv), "--workers", "1", "--out", str(work / f"{n}.json"),
                        "--per-structure", str(work / f"{n}.csv")], work / f"eval_{n}.log")
             for n, csv in splits.items()]
    if any(p.wait() for p in procs):
        raise SystemExit(f"error: matgen evaluate failed (logs in {work})")
    return {n: pd.read_csv(work / f"{n}.csv").set_index("material_id") for n in splits}


def train_polymorph_hits(gen_file: Path, misses: list[str], train: pd.DataFrame,
                         formula_val: pd.Series, formula_train: pd.Series) -> int:
    """How many of the val rows ``misses`` got a crystal that matches a train crystal of the
    same reduced formula (``StructureMatcher.fit`` at the evaluation's tolerances,
    :class:`matgen.evaluation.MatcherConfig`)."""
    from dataclasses import asdict

    from ase.io import read
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from matgen.evaluation import MatcherConfig

    sm = StructureMatcher(**asdict(MatcherConfig()))
    frames = {a.info.get("material_id"): a for a in read(gen_file, index=":")}
    hits = 0
    for mid in misses:
        atoms = frames.get(mid)
        if atoms is None:
            continue
        gen = AseAtomsAdaptor.get_structure(atoms)
        same = train.index[formula_train == formula_val[mid]]
        if any(sm.fit(gen, Structure.from_str(train.at[t, "cif"], fmt="cif")) for t in same):
            hits += 1
    return hits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="folder with train.csv, val.csv")
    ap.add_argument("--rows", type=int, default=300, help="random rows per split")
    ap.add_argument("--row-seed", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", type=Path, default=Path("/tmp/csp_train_val_gap"))
    ap.add_argument("--table", type=Path, default=None,
                    help="analyse this per-structure table instead of sampling")
    ap.add_argument("--split-csv", type=Path, default=None, help="the split of --table")
    ap.add_argument("--note", default=None, help="what --table's samples are (recorded)")
    ap.add_argument("--out", type=Path, required=True, help="results JSON")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.table is not None:
        if args.split_csv is None:
            ap.error("--table needs --split-csv")
        out = {"what": "CSP match by familiarity of the chemistry (csp_train_val_gap.py --table)",
               "command": ("python benchmarks/csp_train_val_gap.py "
                           + " ".join(argv or sys.argv[1:])),
               "note": args.note, **table_mode(args)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(json.dumps(out["by_familiarity"], indent=1)[:2000])
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    full = {n: pd.read_csv(args.data_dir / f"{n}.csv").set_index("material_id")
            for n in ("train", "val")}
    splits = {}
    for n, frame in full.items():
        frame.sample(args.rows, random_state=args.row_seed).reset_index().to_csv(
            args.work / f"{n}_rows.csv", index=False)
        splits[n] = args.work / f"{n}_rows.csv"
    per = _sample_and_score(args.work, splits, args)
    f_train, s_train = _formula_keys(full["train"])
    f_val, s_val = _formula_keys(full["val"])
    val_per = per["val"]
    seen_f = f_val.isin(set(f_train))
    seen_s = s_val.isin(set(s_train))
    tight = val_per["matched"].eq(True) & (val_per["rms_dist"].astype(float) <= LOOSE)
    misses = [m for m in val_per.index if seen_f.get(m, False) and not tight[m]]
    out = {
        "what": __doc__.splitlines()[0],
        "command": "python benchmarks/csp_train_val_gap.py " + " ".join(argv or sys.argv[1:]),
        "rows_per_split": args.rows, "row_seed": args.row_seed, "sampling_seed": args.seed,
        "sampler": f"fast {args.steps}", "checkpoint": str(args.checkpoint or "shipped default"),
        "train": split_summary(per["train"]), "val": split_summary(val_per),
        "val_by_formula_in_train": grouped(val_per, seen_f),
        "val_by_chemsys_in_train": grouped(val_per, seen_s),
        "val_by_familiarity": by_familiarity(
            val_per, familiarity(f_val, s_val, f_train, s_train), num_elements(s_val)),
        "val_formula_seen_misses_or_loose": len(misses),
        "of_which_a_train_polymorph": train_polymorph_hits(
            args.work / "val.extxyz", misses, full["train"], f_val, f_train),
        "wall_s": round(time.time() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("train", "val")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

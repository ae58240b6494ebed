"""Discovery benchmark of the MLIPs on hypothetical WBM structures (issue 17, item 3).

For a seeded random subset of ``wbm_subset/wbm.csv.gz`` (WBM structures with DFT formation
energies on MP's *legacy* correction scale, the scale of the ``hull_refs`` hull: no corrections
for Se, Te, Br, I, Sb; see ``wbm_label_scale_check.py``) and each MLIP (CHGNet, SevenNet-0,
SevenNet-l3i5):

* formation-energy MAE of the MLIP against DFT, through the same code path as ``matgen score``
  (batched FIRE relaxation or a single point, MLIP energies put on the hull's legacy scale by
  :func:`matgen.surrogates._score.mp_compatible_energies`, elemental references of
  :func:`matgen.surrogates.default_hull`);
* stable / unstable classification against the MP reference hull built from
  ``hull_refs`` (:meth:`ConvexHull.from_mp`): a structure is *stable* when its energy above that
  hull is <= 0 (the Matbench Discovery rule); the true label uses the DFT formation energy, the
  prediction the MLIP's. F1, precision, recall, accuracy and the discovery acceleration factor
  DAF = precision / prevalence of stable structures. A structure the MLIP could not score counts
  as predicted unstable.

Both ``unrelaxed`` (single point on the structure as given) and ``relaxed`` (FIRE + cell filter,
``--fmax`` 0.05 eV/Å, ``--max-steps`` 500) are measured; relaxation runs on the first
``--n-relax`` structures of the subset, and the unrelaxed numbers are also given on those same
structures so the two can be compared directly.

Not the Matbench Discovery task: the WBM structures here are the DFT-*relaxed* ones (as kept by
WyckoffTransformer), the hull is MP's only (no WBM phases), and it is a subset, so its numbers
are not directly comparable with the published ones (CHGNet F1 0.613 DAF 3.36, SevenNet-l3i5
F1 0.760 DAF 4.63, which start from unrelaxed prototypes and use the MP+WBM hull).

Usage (CPU run recorded in benchmarks/results/wbm_discovery_cpu.json; one MLIP per call, the
results of several calls are merged into ``--out``, keyed ``chgnet`` or ``sevennet:<checkpoint>``;
files written before ``sevennet`` meant SevenNet-l3i5 key SevenNet-0 as plain ``sevennet``)::

    export MATGEN_DATA_DIR=$(realpath ../shared/datasets) OMP_NUM_THREADS=1
    python benchmarks/wbm_discovery.py --mlip chgnet --n 1000 --n-relax 300 \
        --out benchmarks/results/wbm_discovery_cpu.json
    python benchmarks/wbm_discovery.py --mlip sevennet-0 --n 1000 --n-relax 300 \
        --out benchmarks/results/wbm_discovery_cpu.json

``--mlip sevennet`` is SevenNet-l3i5 (key ``sevennet:7net-l3i5``); another SevenNet checkpoint
with ``--model`` (key ``sevennet:<model>``); the multi-fidelity SevenNet-MF-0 also needs
``--modal`` (``PBE``: the MPtrj scale MP's energy corrections and the MP hull assume; key
``sevennet:7net-mf-0:PBE``)::

    python benchmarks/wbm_discovery.py --mlip sevennet --model 7net-mf-0 --modal PBE \
        --n 1000 --skip-relax --out benchmarks/results/wbm_discovery_cpu_mf0.json

Full set on a GPU (all 10,000 structures, relaxed and unrelaxed)::

    python benchmarks/wbm_discovery.py --mlip chgnet --n 0 --n-relax 0 --device cuda \
        --batch-size 256 --out benchmarks/results/wbm_discovery_gpu.json
    python benchmarks/wbm_discovery.py --mlip sevennet --n 0 --n-relax 0 --device cuda \
        --batch-size 256 --out benchmarks/results/wbm_discovery_gpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

WBM_FILE = Path("wbm_subset") / "wbm.csv.gz"


def classification(true_e_hull, pred_e_hull, threshold: float = 0.0) -> dict:
    """F1, precision, recall, accuracy and DAF of ``pred <= threshold`` against
    ``true <= threshold`` (NaN predictions count as predicted unstable)."""
    t = np.asarray(true_e_hull, dtype=float)
    p = np.asarray(pred_e_hull, dtype=float)
    keep = np.isfinite(t)
    t, p = t[keep], p[keep]
    true_s = t <= threshold
    pred_s = np.isfinite(p) & (p <= threshold)
    tp = int((true_s & pred_s).sum())
    fp = int((~true_s & pred_s).sum())
    fn = int((true_s & ~pred_s).sum())
    tn = int((~true_s & ~pred_s).sum())
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = (2 * precision * recall / (precision + recall)
          if tp and math.isfinite(precision + recall) else 0.0)
    prevalence = (tp + fn) / n if n else math.nan
    return {
        "n": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "prevalence": prevalence,
        "precision": precision, "recall": recall, "f1": f1,
        "accuracy": (tp + tn) / n if n else math.nan,
        "daf": precision / prevalence if prevalence and math.isfinite(precision) else math.nan,
    }


def regression(true, pred) -> dict:
    t, p = np.asarray(true, dtype=float), np.asarray(pred, dtype=float)
    ok = np.isfinite(t) & np.isfinite(p)
    err = p[ok] - t[ok]
    return {
        "n": int(ok.sum()),
        "mae": float(np.abs(err).mean()) if ok.any() else math.nan,
        "rmse": float(np.sqrt((err**2).mean())) if ok.any() else math.nan,
        "mean_error": float(err.mean()) if ok.any() else math.nan,
    }


def summary(df, col: str) -> dict:
    """All metrics for the prediction columns ``<col>_e_form`` / ``<col>_e_hull``."""
    pe, ph = df[f"{col}_e_form"].to_numpy(), df[f"{col}_e_hull"].to_numpy()
    out = {
        "e_form": regression(df["dft_e_form"], pe),
        "e_above_hull": regression(df["dft_e_hull"], ph),
        "stable_at_0": classification(df["dft_e_hull"], ph, 0.0),
        "failed": int((~np.isfinite(pe)).sum()),
        "suspect_fraction": float(np.mean(np.isfinite(ph) & (ph < -0.05))),
    }
    # how often the MLIP is right when it puts a structure > 0.05 eV/atom below the MP hull
    sus = np.isfinite(ph) & (ph < -0.05)
    true_s = df["dft_e_hull"].to_numpy() <= 0
    out["suspect_truly_stable_fraction"] = float(true_s[sus].mean()) if sus.any() else math.nan
    out["stable_at_0_without_suspects"] = classification(
        df["dft_e_hull"], np.where(sus, np.nan, ph), 0.0)
    if f"{col}_converged" in df:
        out["converged_fraction"] = float(df[f"{col}_converged"].mean())
        out["mean_steps"] = float(df[f"{col}_steps"].mean())
    return out


def metrics(df, mlip: str, n_relax: int) -> dict:
    """The summaries of one MLIP's per-structure table (unrelaxed; relaxed on its subset)."""
    base = f"{mlip}_unrelaxed"
    results = {"unrelaxed": summary(df, base)}
    if f"{mlip}_relaxed_e_form" in df:
        sub = df.iloc[:n_relax]
        results["relaxed"] = summary(sub, f"{mlip}_relaxed")
        results["unrelaxed_on_relaxed_subset"] = summary(sub, base)
        results["relaxed_subset_size"] = n_relax
    return results


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def _machine(device: str) -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        "device": device,
        "torch": torch.__version__,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run(args: argparse.Namespace) -> dict:
    import pandas as pd
    from pymatgen.core import Structure

    from matgen.surrogates import RelaxConfig, default_hull, load_mlip, relax
    from matgen.surrogates._mlip import HULL_SCALE, mlip_energy_scale
    from matgen.surrogates._score import mp_compatible_energies

    data_dir = Path(args.data_dir or os.environ.get("MATGEN_DATA_DIR", "../shared/datasets"))
    df = pd.read_csv(data_dir / WBM_FILE)
    order = np.random.default_rng(args.seed).permutation(len(df))
    n = len(df) if args.n <= 0 else min(args.n, len(df))
    df = df.iloc[order[:n]].reset_index(drop=True)
    df = df.rename(columns={"Unnamed: 0": "wbm_row", "formation_energy_per_atom": "dft_e_form"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = [Structure.from_str(c, fmt="cif") for c in df["cif"]]
    df = df.drop(columns=["cif", "band_gap"], errors="ignore")
    df["formula"] = [s.composition.reduced_formula for s in structures]
    df["num_atoms"] = [len(s) for s in structures]
    n_relax = n if args.n_relax <= 0 else min(args.n_relax, n)

    mlip_kwargs = {"model": args.model} if args.model else {}
    if args.modal:
        mlip_kwargs["modal"] = args.modal
    mlip = load_mlip(args.mlip, device=args.device, **mlip_kwargs)
    hull = default_hull(mlip)
    if not (data_dir / "hull_refs").exists():
        raise SystemExit(f"no hull_refs under {data_dir}: the MP hull must come from the data")
    t0 = time.perf_counter()
    df["dft_e_hull"] = [
        e - hull.hull_energy_per_atom(s.composition)
        for s, e in zip(structures, df["dft_e_form"], strict=True)
    ]
    t_hull = time.perf_counter() - t0

    timings = {"hull_seconds": t_hull}
    for mode, count, steps in (("unrelaxed", n, 0), ("relaxed", n_relax, args.max_steps)):
        if args.skip_relax and mode == "relaxed":
            continue
        cfg = RelaxConfig(fmax=args.fmax, max_steps=steps, batch_size=args.batch_size)
        subset = structures[:count]
        t0 = time.perf_counter()
        res = relax(subset, mlip, cfg)
        dt = time.perf_counter() - t0
        timings[f"{mode}_seconds"] = dt
        timings[f"{mode}_structures_per_s"] = count / dt
        final = [r.structure if r.structure is not None else s
                 for s, r in zip(subset, res, strict=True)]
        e = mp_compatible_energies(mlip, final, [r.energy_per_atom for r in res])
        ef = np.array([hull.e_form_per_atom(s.composition, x) if math.isfinite(x) else math.nan
                       for s, x in zip(subset, e, strict=True)])
        eh = np.array([x - hull.hull_energy_per_atom(s.composition) if math.isfinite(x)
                       else math.nan for s, x in zip(subset, ef, strict=True)])
        col = f"{args.mlip}_{mode}"
        pad = n - count
        df[f"{col}_e_form"] = np.concatenate([ef, np.full(pad, np.nan)])
        df[f"{col}_e_hull"] = np.concatenate([eh, np.full(pad, np.nan)])
        if steps:
            df[f"{col}_converged"] = [r.converged for r in res] + [False] * pad
            df[f"{col}_steps"] = [r.steps for r in res] + [0] * pad
        print(f"{col}: {count} structures in {dt:.0f} s", file=sys.stderr, flush=True)

    results = metrics(df, args.mlip, n_relax)
    results["subset_size"] = n
    results["mlip"] = {"name": mlip.name, "version": str(getattr(mlip, "version", "")),
                       "energy_scale": mlip_energy_scale(mlip),
                       "put_on_hull_scale": HULL_SCALE, "hull": hull.key}
    results["timings"] = timings
    results["relax_config"] = {"fmax": args.fmax, "max_steps": args.max_steps,
                               "batch_size": args.batch_size, "relax_cell": True}
    results["command"] = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    results["machine"] = _machine(str(mlip.device))
    results["git_commit"] = _git_commit()
    results["date"] = datetime.date.today().isoformat()
    results["seed"] = args.seed
    results["dataset"] = str(WBM_FILE)
    results["prevalence_of_stable_in_subset"] = float(np.mean(df["dft_e_hull"] <= 0))
    if args.per_structure:
        p = Path(args.per_structure)
        p.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(p, index=False, float_format="%.5f")
    return results


def result_key(args: argparse.Namespace) -> str:
    """A run's key in ``--out``: ``chgnet`` or ``sevennet:<checkpoint>[:<modal>]``, so that the
    two SevenNets behind ``--mlip sevennet`` and ``sevennet-0`` never share one."""
    from matgen.surrogates._mlip import SEVENNET_CHECKPOINTS

    sevennet = args.mlip in SEVENNET_CHECKPOINTS
    model = args.model or (SEVENNET_CHECKPOINTS[args.mlip] if sevennet else None)
    key = args.mlip if model is None else f"{'sevennet' if sevennet else args.mlip}:{model}"
    return f"{key}:{args.modal}" if args.modal else key


def main(argv: list[str] | None = None) -> None:
    from matgen.surrogates._mlip import MLIP_NAMES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mlip", required=True, choices=list(MLIP_NAMES),
                    help="sevennet: SevenNet-l3i5, sevennet-0: SevenNet-0, chgnet")
    ap.add_argument("--model", default=None,
                    help="another SevenNet checkpoint (default: the --mlip name's)")
    ap.add_argument("--modal", default=None,
                    help="fidelity of a multi-fidelity SevenNet (7net-mf-0: PBE or R2SCAN)")
    ap.add_argument("--n", type=int, default=1000, help="subset size (0: all)")
    ap.add_argument("--n-relax", type=int, default=300,
                    help="relax the first N of the subset (0: all)")
    ap.add_argument("--skip-relax", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fmax", type=float, default=0.05)
    ap.add_argument("--max-steps", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", required=True, help="results JSON (merged per MLIP)")
    ap.add_argument("--per-structure", default=None, help="also write per-structure CSV")
    ap.add_argument("--from-csv", default=None,
                    help="add metrics missing from --out from a --per-structure CSV (no MLIP)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    merged = json.loads(out.read_text()) if out.exists() else {}
    key = result_key(args)
    if args.from_csv:
        import pandas as pd

        # only metrics the run did not record yet (the CSV's 5 decimals could move a
        # structure that sits exactly on the hull, so recorded numbers are kept)
        res = merged["results"][key]
        new = metrics(pd.read_csv(args.from_csv), args.mlip, res.get("relaxed_subset_size", 0))
        for mode, vals in new.items():
            if isinstance(vals, dict):
                for k, v in vals.items():
                    res.setdefault(mode, {}).setdefault(k, v)
    else:
        res = run(args)
    merged.setdefault("results", {})[key] = res
    merged["description"] = (
        "MLIP discovery benchmark on hypothetical WBM structures (benchmarks/wbm_discovery.py): "
        "formation-energy MAE vs DFT (eV/atom) and stable (e_above_hull <= 0 on the MP hull "
        "from hull_refs) classification; DAF = precision / prevalence. WBM structures are the "
        "DFT-relaxed ones; not directly comparable with Matbench Discovery.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(merged, indent=1, sort_keys=False, default=float) + "\n")
    os.replace(tmp, out)
    r = res
    for mode in ("unrelaxed", "unrelaxed_on_relaxed_subset", "relaxed"):
        if mode in r:
            c, m = r[mode]["stable_at_0"], r[mode]["e_form"]
            print(f"{key} {mode}: n={c['n']} MAE {m['mae']:.4f} F1 {c['f1']:.3f} "
                  f"P {c['precision']:.3f} R {c['recall']:.3f} DAF {c['daf']:.2f}")


if __name__ == "__main__":
    main()

"""Conditional hit rate: do conditioned samples land in the requested property window?

For a checkpoint and a property with an independent predictor in ``matgen/assets/predictors``
(the surrogate deep ensemble, not the generator), for each target window ``[lo, hi]``:

* sample ``--num`` de novo structures conditioned on the window with guidance ``G``, with each
  range strategy: ``uniform`` (``KEY=LO:HI``: a target drawn uniformly in the window per
  structure, what ``matgen sample`` does) and ``midpoint`` (``KEY=(LO+HI)/2``);
* sample ``--num-uncond`` unconditional structures (the base rate);
* keep the valid structures (CDVAE rules: SMACT composition and >= 0.5 Å distances), predict the
  property with the surrogate, and report the hit rate (fraction of valid samples with the
  prediction inside the window), next to the unconditional base rate of the same window and the
  training set's fraction in it, with the enrichment and a one-sided Fisher p-value
  (:func:`matgen.evaluation.compare_to_base_rate`).

Also the chemical-system adherence of a ``--chemsys`` run (fraction of all samples using only
those elements) and the mean absolute gap between the drawn target and the prediction.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/conditional_hit_rate.py \
        [--checkpoint CKPT] [--num 40] [--guidance 2] [--sampler fast --steps 50] \
        [--windows 0:0.1,1:2,2:3,3:5] [--chemsys Li-Fe-O] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _windows(text: str) -> list[tuple[float, float]]:
    out = []
    for part in text.split(","):
        lo, hi = part.split(":")
        out.append((float(lo), float(hi)))
    return out


def _judge(path: Path, predictor, chemsys: set[str] | None = None) -> dict:
    """Validity, surrogate predictions and drawn targets of one extxyz file."""
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    from matgen.evaluation import check_validity

    frames = read(path, index=":")
    structures, valid, targets, in_sys = [], [], [], []
    for a in frames:
        try:
            s = AseAtomsAdaptor.get_structure(a)
        except Exception:  # noqa: BLE001 - a frame that cannot become a structure is invalid
            s = None
        structures.append(s)
        valid.append(check_validity(s, a.get_atomic_numbers().tolist()).valid)
        t = a.info.get(f"target_{predictor.label}")
        targets.append(float(t) if t is not None else math.nan)
        if chemsys is not None:
            in_sys.append(set(a.get_chemical_symbols()) <= chemsys)
    pred = np.full(len(frames), np.nan)
    idx = [i for i, ok in enumerate(valid) if ok]
    if idx:
        pred[idx] = predictor.predict([structures[i] for i in idx]).mean
    return {"pred": pred, "valid": np.array(valid, bool), "targets": np.array(targets),
            "in_chemsys": np.array(in_sys, bool) if chemsys is not None else None,
            "num": len(frames)}


def _rate(j: dict, lo: float, hi: float):
    from matgen.evaluation import hit_rate

    return hit_rate(j["pred"], (lo, hi), j["valid"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data = Path(os.environ.get("MATGEN_DATA_DIR", ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--checkpoint", default=None, help="default: the shipped default model")
    ap.add_argument("--property", default="band_gap")
    ap.add_argument("--windows", default="0:0.1,1:2,2:3,3:5")
    ap.add_argument("--strategies", default="uniform,midpoint")
    ap.add_argument("--num", type=int, default=40, help="samples per window and strategy")
    ap.add_argument("--num-uncond", type=int, default=None, help="default: 2 x --num")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--sampler", default="fast", choices=["fast", "pc", "consistency"])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--chemsys", default="Li-Fe-O")
    ap.add_argument("--batch-size", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--train-csv", type=Path, default=data / "mp20_reduced" / "train.csv")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", type=Path,
                    default=ROOT / "benchmarks" / "results" / "conditional_hit_rate_cpu.json")
    args = ap.parse_args()

    import torch

    from matgen.evaluation import compare_to_base_rate
    from matgen.generate import DEFAULT_MODEL_DIR, generate, read_metadata, resolve_checkpoint
    from matgen.guidance import parse_chemsys
    from matgen.surrogates import PropertyPredictor

    ckpt = resolve_checkpoint(args.checkpoint or DEFAULT_MODEL_DIR)
    meta = read_metadata(ckpt)
    pred_dir = ROOT / "matgen" / "assets" / "predictors" / args.property
    predictor = PropertyPredictor.load(pred_dir)
    windows = _windows(args.windows)
    strategies = [s for s in args.strategies.split(",") if s]
    n_unc = args.num_uncond or 2 * args.num
    common = {"checkpoint": ckpt, "sampler": args.sampler, "steps": args.steps,
              "batch_size": args.batch_size, "device": args.device, "progress": False,
              "log": None}
    t_start = time.perf_counter()
    timings = {}

    train_rates = None
    if args.train_csv.is_file():
        import pandas as pd

        y = pd.read_csv(args.train_csv, usecols=[args.property])[args.property].to_numpy(float)
        train_rates = {f"{lo:g}:{hi:g}": float(np.mean((y >= lo) & (y <= hi)))
                       for lo, hi in windows}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        generate(tmp / "uncond.extxyz", num=n_unc, seed=args.seed, **common)
        timings["uncond_s"] = time.perf_counter() - t0
        unc = _judge(tmp / "uncond.extxyz", predictor)

        rows = []
        for k, (lo, hi) in enumerate(windows):
            base = _rate(unc, lo, hi)
            for strat in strategies:
                text = (f"{args.property}={lo:g}:{hi:g}" if strat == "uniform"
                        else f"{args.property}={(lo + hi) / 2:g}")
                path = tmp / f"w{k}_{strat}.extxyz"
                t0 = time.perf_counter()
                generate(path, num=args.num, conditions=[text], guidance=args.guidance,
                         seed=args.seed + 1 + k, **common)
                el = time.perf_counter() - t0
                j = _judge(path, predictor)
                hr = _rate(j, lo, hi)
                cmp = compare_to_base_rate(hr, base)
                ok = j["valid"] & np.isfinite(j["pred"])
                rows.append({
                    "window": [lo, hi],
                    "strategy": strat,
                    "condition": text,
                    "hits": hr.hits,
                    "num_valid": hr.num_valid,
                    "num_total": hr.num_total,
                    "hit_rate": hr.rate,
                    "base_rate_uncond": base.rate,
                    "base_hits_uncond": base.hits,
                    "train_rate": None if train_rates is None else train_rates[f"{lo:g}:{hi:g}"],
                    "enrichment": cmp["enrichment"],
                    "p_value": cmp["p_value"],
                    "validity": float(j["valid"].mean()),
                    "pred_mean": float(np.nanmean(j["pred"][ok])) if ok.any() else math.nan,
                    "pred_median": float(np.nanmedian(j["pred"][ok])) if ok.any() else math.nan,
                    "mae_target_vs_pred": float(np.mean(np.abs(j["pred"][ok] - j["targets"][ok])))
                    if ok.any() else math.nan,
                    "seconds": el,
                })
                r = rows[-1]
                print(f"{text:>22} [{lo:g},{hi:g}] hit {r['hit_rate']:.3f} "
                      f"({r['hits']}/{r['num_valid']}) base {r['base_rate_uncond']:.3f} "
                      f"enrich {r['enrichment']:.2f} p={r['p_value']:.2g} "
                      f"pred median {r['pred_median']:.2f} ({el:.0f} s)", flush=True)

        chem = None
        if args.chemsys:
            from pymatgen.core import Element

            allowed = {Element.from_Z(z).symbol for z in parse_chemsys(args.chemsys)}
            t0 = time.perf_counter()
            generate(tmp / "chemsys.extxyz", num=args.num, chemsys=args.chemsys,
                     seed=args.seed + 99, **common)
            timings["chemsys_s"] = time.perf_counter() - t0
            jc = _judge(tmp / "chemsys.extxyz", predictor, allowed)
            unc_sys = [set(s) <= allowed for s in _symbols(tmp / "uncond.extxyz")]
            chem = {
                "chemsys": args.chemsys,
                "num": jc["num"],
                "adherence": float(jc["in_chemsys"].mean()),
                "validity": float(jc["valid"].mean()),
                "uncond_adherence": float(np.mean(unc_sys)),
            }
            print(f"chemsys {args.chemsys}: adherence {chem['adherence']:.3f} "
                  f"(unconditional {chem['uncond_adherence']:.3f}), validity "
                  f"{chem['validity']:.3f}", flush=True)

    summary = {}
    for strat in strategies:
        rs = [r for r in rows if r["strategy"] == strat]
        summary[strat] = {
            "mean_hit_rate": float(np.mean([r["hit_rate"] for r in rs])),
            "mean_mae_target_vs_pred": float(np.mean([r["mae_target_vs_pred"] for r in rs])),
            "windows_at_3x_base": int(sum(
                r["hit_rate"] >= 3 * r["base_rate_uncond"] and r["hits"] > 0 for r in rs)),
        }
    best = max(summary, key=lambda s: summary[s]["mean_hit_rate"]) if summary else None
    strategy_test = None
    if len(strategies) == 2:  # pooled over windows: is the better strategy significantly so?
        from scipy.stats import fisher_exact

        pooled = {}
        for strat in strategies:
            rs = [r for r in rows if r["strategy"] == strat]
            h, v = sum(r["hits"] for r in rs), sum(r["num_valid"] for r in rs)
            pooled[strat] = {"hits": h, "num_valid": v, "rate": h / v if v else math.nan}
        a, b = (pooled[s] for s in strategies)
        p_two = fisher_exact([[a["hits"], a["num_valid"] - a["hits"]],
                              [b["hits"], b["num_valid"] - b["hits"]]])[1]
        strategy_test = {"pooled": pooled, "fisher_two_sided_p": float(p_two),
                         "significant_at_0.05": bool(p_two < 0.05)}

    result = {
        "benchmark": "conditional_hit_rate",
        "command": " ".join(shlex.quote(x) for x in
                            ["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", ""),
                             "python", *sys.argv]),
        "machine": {
            "device": str(args.device if args.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu")),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "checkpoint": {
            "path": str(ckpt),
            "step": meta.get("step"),
            "dataset": (meta.get("dataset") or {}).get("name"),
            "conditions": sorted(meta.get("conditions") or {}),
            "cond_drop_prob": meta.get("cond_drop_prob"),
        },
        "judge": {
            "predictor": str(pred_dir.relative_to(ROOT)),
            "kind": "surrogate deep ensemble (matgen.surrogates.PropertyPredictor), "
                    "independent of the generator",
            "test_mae": ((json.loads((pred_dir / "predictor.json").read_text()).get("metrics")
                          or {}).get("test") or {}).get("mae"),
        },
        "settings": {
            "property": args.property, "num_per_window": args.num, "num_uncond": n_unc,
            "guidance": args.guidance, "sampler": args.sampler, "steps": args.steps,
            "seed": args.seed, "validity": "CDVAE rules (SMACT + 0.5 A distances)",
            "hit": "valid sample with the surrogate's mean prediction inside [lo, hi]; "
                   "rate over valid samples",
        },
        "unconditional": {
            "num": unc["num"], "validity": float(unc["valid"].mean()),
            "pred_median": float(np.nanmedian(unc["pred"])) if np.isfinite(unc["pred"]).any()
            else math.nan,
        },
        "windows": rows,
        "strategy_summary": summary,
        "better_strategy": best,
        "strategy_test": strategy_test,
        "chemsys": chem,
        "timings": dict(timings, total_s=time.perf_counter() - t_start),
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {args.out} (best strategy: {best})")


def _symbols(path: Path) -> list[set[str]]:
    from ase.io import read

    return [set(a.get_chemical_symbols()) for a in read(path, index=":")]


if __name__ == "__main__":
    main()

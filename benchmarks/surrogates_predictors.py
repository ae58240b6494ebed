"""Train the default property predictors on mp20_reduced and record test MAE and coverage.

    OMP_NUM_THREADS=1 python benchmarks/surrogates_predictors.py \
        [--labels band_gap formation_energy_per_atom] [--out-assets matgen/assets/predictors]

Writes matgen/assets/predictors/<label>/ (safetensors + JSON) and
benchmarks/results/surrogates_predictors.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from matgen.surrogates import (
    FeaturizerConfig,
    PredictorConfig,
    featurize,
    fit_predictor,
    interval_metrics,
)

REPO = Path(__file__).resolve().parents[1]
#: Bump when the descriptor code changes (invalidates cached features).
FEATURE_VERSION = 2


def load_split(data_dir: Path, split: str, cache: Path, fcfg: FeaturizerConfig):
    """(features (B, D), labels DataFrame) of an mp20_reduced split, features cached."""
    from pymatgen.core import Structure

    df = pd.read_csv(data_dir / "mp20_reduced" / f"{split}.csv")
    tag = hashlib.sha1(json.dumps(fcfg.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
    key = cache / f"mp20_reduced_{split}_{tag}_v{FEATURE_VERSION}.pt"
    if key.exists():
        feats = torch.load(key)
    else:
        structs = [Structure.from_str(c, fmt="cif") for c in df["cif"]]
        feats = featurize(structs, fcfg)
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(feats, key)
    return feats, df


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--labels", nargs="+", default=["formation_energy_per_atom", "band_gap"])
    ap.add_argument("--data-dir", default=os.environ.get("MATGEN_DATA_DIR",
                                                         REPO.parent / "shared" / "datasets"))
    ap.add_argument("--out-assets", default=str(REPO / "matgen" / "assets" / "predictors"))
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "results" /
                                             "surrogates_predictors.json"))
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    data_dir = Path(args.data_dir)
    cache = Path(os.environ.get("MATGEN_CACHE_DIR", Path.home() / ".cache" / "matgen")) / "feat"
    fcfg = FeaturizerConfig()
    t0 = time.perf_counter()
    ftr, dtr = load_split(data_dir, "train", cache, fcfg)
    fva, dva = load_split(data_dir, "val", cache, fcfg)
    fte, dte = load_split(data_dir, "test", cache, fcfg)
    t_feat = time.perf_counter() - t0
    results = {
        "dataset": "mp20_reduced (train 9,894 / val 1,000 / test 4,523)",
        "model": "deep ensemble of mean-variance MLPs on an e3nn spherical-harmonic power "
                 "spectrum descriptor; std calibrated on val by one ML scale",
        "featurize_seconds_all_splits": round(t_feat, 1),
        "machine": f"{platform.machine()} CPU, torch threads {torch.get_num_threads()}",
        "labels": {},
    }
    if Path(args.results).exists():
        old = json.loads(Path(args.results).read_text())
        results["labels"] = old.get("labels", {})
    cfg = PredictorConfig(n_members=args.members, epochs=args.epochs, seed=args.seed)
    for label in args.labels:
        t1 = time.perf_counter()
        pred = fit_predictor(
            [None] * len(dtr), label, cfg,  # features given: no structures needed
            labels=dtr[label].to_numpy(float), features=ftr,
            val_features=fva, val_labels=dva[label].to_numpy(float), featurizer=fcfg,
        )
        t_fit = time.perf_counter() - t1
        p = pred.predict_features(fte)
        y = dte[label].to_numpy(float)
        test = interval_metrics(p.mean, p.std, y)
        uncal = interval_metrics(p.mean, p.std / pred.calibration_scale, y)
        baseline_mae = float(np.abs(y - np.nanmean(dtr[label])).mean())
        pred.metrics["test"] = test
        out = pred.save(Path(args.out_assets) / label)
        results["labels"][label] = {
            "test": test,
            "test_uncalibrated_coverage": {k: uncal[k] for k in ("coverage_68", "coverage_95")},
            "val": pred.metrics.get("val"),
            "calibration_scale": pred.calibration_scale,
            "mae_predict_train_mean": baseline_mae,
            "test_ood_score_mean": float(np.nanmean(p.ood_score)),
            "fit_seconds": round(t_fit, 1),
            "config": {"members": cfg.n_members, "hidden": list(cfg.hidden),
                       "epochs": cfg.epochs, "seed": cfg.seed},
            "asset": str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(out),
        }
        print(label, json.dumps(results["labels"][label]["test"]), flush=True)
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

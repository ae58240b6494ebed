"""Simulated discovery campaign: acceleration of BoTorch selection over random selection.

The pool is MP-20's test split (``mp20_reduced/test.csv``) plus the WBM subset
(``wbm_subset/wbm.csv.gz``), about 14.5k labelled crystals; the oracle is the dataset itself
(:class:`matgen.campaign.DatasetOracle` semantics: labels looked up by id). A candidate is a hit
when its band gap lies in ``[GAP_LO, GAP_HI]`` eV AND its formation energy is at most
``EFORM_MAX`` eV/atom (the stability criterion available for both sources; MP-20's
``e_above_hull`` is missing for WBM rows).

Each campaign starts from the same random batch for both strategies (``INIT`` candidates) and
then spends ``ROUNDS`` batches of ``BATCH``: random selection, or BoTorch (one GP per label,
window constraints, acquisition over the untested pool, at most one pick per reduced formula per
batch). Acceleration factor (enhancement at a fixed budget) = hits found by BoTorch / hits
expected from random selection at the same budget (``budget * base rate``); simulated random
runs are reported too.

Surrogates (``--surrogate``):

* ``gp``: a plain GP per label on 38 cheap composition + cell features (the first version);
* ``prior_gp`` (default): each GP starts from the shipped property predictors
  (``matgen/assets/predictors``, deep ensembles trained on ``mp20_reduced/train.csv``, which
  shares no row with the pool) as a campaign's scorer provides them: the predictor's mean is the
  GP's prior mean, its per-candidate standard deviation scales the kernel
  (:class:`matgen.acquisition.PredictorPrior`), the kernel runs over the predicted means;
* ``prior_only``: the same predictors and acquisition without learning from the labels (the
  reference that shows what the campaign's learning adds).

Features and predictions are computed once per pool and cached under ``$MATGEN_CACHE``
(default ``~/.cache/matgen``); their time is reported apart from the campaign time.

usage: python benchmarks/campaign_acceleration.py [--seeds 0,1,2,3,4] [--surrogate prior_gp]
           [--kind pof] [--out FILE]
       python benchmarks/campaign_acceleration.py --merge a.json b.json  # combine runs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import torch

from matgen.acquisition import (
    FeatureScaler,
    PoolEnsembleModel,
    PredictorPrior,
    Target,
    cell_features,
    composition_features,
    fit_gp_models,
    select,
)

GAP_LO, GAP_HI, EFORM_MAX = 1.5, 3.0, -2.0
INIT, BATCH, ROUNDS = 30, 15, 10
PROPS = ["band_gap", "formation_energy_per_atom"]
TARGETS = [Target("band_gap", minimum=GAP_LO, maximum=GAP_HI, scale=1.0),
           Target("formation_energy_per_atom", maximum=EFORM_MAX, scale=0.5)]

_SUM = re.compile(r"_chemical_formula_sum\s+'?([^'\n]+)'?")
_VOL = re.compile(r"_cell_volume\s+([0-9.eE+-]+)")


def data_dir() -> Path:
    return Path(os.environ.get("MATGEN_DATA_DIR",
                               Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def _cache_dir() -> Path:
    cache = Path(os.environ.get("MATGEN_CACHE", Path.home() / ".cache" / "matgen"))
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def _pool_cifs() -> list[str]:
    import pandas as pd

    d = data_dir()
    mp = pd.read_csv(d / "mp20_reduced" / "test.csv")
    wbm = pd.read_csv(d / "wbm_subset" / "wbm.csv.gz")
    return [*mp["cif"], *wbm["cif"]]


def load_predictions(n: int) -> dict:
    """The shipped property predictors on every pool crystal (cached on disk).

    Returns ``prior_mean`` and ``prior_std``: ``(n, 2)`` in the order of ``PROPS``
    (eV, eV/atom), and ``seconds`` (featurise + predict, 0 when read from the cache).
    """
    import warnings

    from pymatgen.core import Structure

    from matgen.surrogates import featurize, load_default_predictors

    f = _cache_dir() / "campaign_acceleration_predictions_v1.npz"
    if f.exists():
        z = np.load(f)
        if len(z["prior_mean"]) == n:
            return {"prior_mean": z["prior_mean"], "prior_std": z["prior_std"], "seconds": 0.0}
    t = time.time()
    preds = {p.label: p for p in load_default_predictors()}
    missing = [p for p in PROPS if p not in preds]
    if missing:
        raise SystemExit(f"no shipped predictor for {missing} in matgen/assets/predictors")
    cifs = _pool_cifs()
    feats = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's CIF rounding notes
        for k in range(0, len(cifs), 500):
            ss = [Structure.from_str(c, fmt="cif") for c in cifs[k : k + 500]]
            feats.append(featurize(ss, preds[PROPS[0]].featurizer))
    x = torch.cat(feats)
    out = [preds[p].predict_features(x) for p in PROPS]
    mean = np.stack([o.mean for o in out], 1).astype(float)
    std = np.stack([o.std for o in out], 1).astype(float)
    # a crystal the descriptor cannot handle: the pool's typical prediction, wide uncertainty
    bad = ~np.isfinite(mean).all(1) | ~np.isfinite(std).all(1)
    mean[bad] = np.nanmedian(mean, 0)
    std[bad] = 3 * np.nanmax(std, 0)
    np.savez(f, prior_mean=mean, prior_std=std)
    return {"prior_mean": mean, "prior_std": std, "seconds": time.time() - t}


def load_pool() -> dict:
    """Labels, reduced formulas and features of the pool (features cached on disk)."""
    import pandas as pd
    from pymatgen.core import Composition

    f = _cache_dir() / "campaign_acceleration_pool_v1.npz"
    if f.exists():
        z = np.load(f, allow_pickle=True)
        return {k: z[k] for k in z.files}
    d = data_dir()
    mp = pd.read_csv(d / "mp20_reduced" / "test.csv")
    wbm = pd.read_csv(d / "wbm_subset" / "wbm.csv.gz")
    ids = [*mp["material_id"].astype(str), *(f"wbm-{i}" for i in range(len(wbm)))]
    cifs = [*mp["cif"], *wbm["cif"]]
    y = np.concatenate([mp[PROPS].to_numpy(float), wbm[PROPS].to_numpy(float)])
    comps, vols, formulas = [], [], []
    for cif in cifs:
        comp = Composition(_SUM.search(cif).group(1))
        comps.append({el.Z: float(n) for el, n in comp.items()})
        vols.append(float(_VOL.search(cif).group(1)))
        formulas.append(comp.reduced_formula)
    x = torch.cat([composition_features(comps), cell_features(comps, vols)], -1).numpy()
    out = {"ids": np.array(ids), "y": y, "x": x, "formula": np.array(formulas)}
    np.savez(f, **out)
    return out


def hits_of(y: np.ndarray) -> np.ndarray:
    return (y[:, 0] >= GAP_LO) & (y[:, 0] <= GAP_HI) & (y[:, 1] <= EFORM_MAX)


def surrogate_inputs(pool: dict, surrogate: str) -> tuple[torch.Tensor, PredictorPrior | None]:
    """Standardised features of the pool and, for ``prior_gp``, where the predictor sits."""
    if surrogate == "gp":
        raw = torch.as_tensor(pool["x"])
        return FeatureScaler.fit(raw)(raw), None
    # columns: predicted means (the kernel's inputs), then predicted std deviations
    raw = torch.as_tensor(np.concatenate([pool["prior_mean"], pool["prior_std"]], 1))
    return PredictorPrior.standardise(raw)


def fit_surrogate(x, y, tested, pool: dict, surrogate: str, prior, seed: int):
    """The round's BoTorch model."""
    if surrogate == "prior_only":  # the predictors alone, never updated
        return PoolEnsembleModel(x, torch.as_tensor(pool["prior_mean"]),
                                 torch.as_tensor(pool["prior_std"]), seed=seed)
    return fit_gp_models(x[tested], y[tested], seed=seed, prior=prior)


def campaign_order(pool: dict, seed: int, kind: str, surrogate: str = "prior_gp",
                   targets: list[Target] = TARGETS) -> list[int]:
    """Pool rows in the order a BoTorch campaign labels them (initial batch, then each round)."""
    x, prior = surrogate_inputs(pool, surrogate)
    y = torch.as_tensor(pool["y"])
    n = len(y)
    rng = np.random.default_rng(seed)
    tested = list(rng.choice(n, INIT, replace=False))
    groups = pool["formula"].tolist()
    for r in range(ROUNDS):
        model = fit_surrogate(x, y, tested, pool, surrogate, prior, seed * 100 + r)
        excl = torch.zeros(n, dtype=torch.bool)
        excl[tested] = True
        sel = select(model, x, BATCH, targets, PROPS, x[tested], exclude=excl, groups=groups,
                     kind=kind, seed=seed * 100 + r)
        tested += sel.indices
    return tested


def random_order(n: int, seed: int) -> list[int]:
    """The same initial batch as :func:`campaign_order` (same rng draw), then random rows."""
    order = np.random.default_rng(seed).permutation(n)
    init = list(np.random.default_rng(seed).choice(n, INIT, replace=False))
    rest = [i for i in order if i not in set(init)]
    return init + rest[: BATCH * ROUNDS]


def curve(tested: list[int], metric) -> list:
    """``metric`` of the labelled rows after the initial batch and after each round."""
    return [metric(tested[: INIT + BATCH * k]) for k in range(ROUNDS + 1)]


def run_bo(pool: dict, seed: int, kind: str, surrogate: str = "prior_gp") -> list[int]:
    """Cumulative hits after the initial batch and after each round."""
    hit = hits_of(pool["y"])
    return curve(campaign_order(pool, seed, kind, surrogate), lambda t: int(hit[t].sum()))


def run_random(pool: dict, seed: int) -> list[int]:
    hit = hits_of(pool["y"])
    return curve(random_order(len(hit), seed), lambda t: int(hit[t].sum()))


# two objectives: band gap as close to the window as possible (0 inside) and the lowest
# formation energy, by qLogNEHVI; dominated hypervolume above HV_REF (objective space:
# minus the band gap's distance to the window in eV, minus the formation energy in eV/atom)
MO_TARGETS = [Target("band_gap", goal="window", minimum=GAP_LO, maximum=GAP_HI, scale=1.0),
              Target("formation_energy_per_atom", goal="minimize", scale=0.5)]
HV_REF = (-1.0, 0.0)


def hypervolume(y: np.ndarray) -> float:
    """Dominated hypervolume of labels ``y``: ``(n, 2)`` in the MO_TARGETS objectives."""
    from botorch.utils.multi_objective.hypervolume import Hypervolume
    from botorch.utils.multi_objective.pareto import is_non_dominated

    yt = torch.as_tensor(y, dtype=torch.float64)
    obj = torch.stack([t.objective(yt[:, PROPS.index(t.name)]) for t in MO_TARGETS], -1)
    ref = torch.tensor(HV_REF, dtype=torch.float64)
    obj = obj[(obj > ref).all(-1)]
    if len(obj) == 0:
        return 0.0
    return float(Hypervolume(ref).compute(obj[is_non_dominated(obj)]))


def run_mo(pool: dict, seed: int, surrogate: str) -> dict:
    """Hypervolume curves of qLogNEHVI and of random selection for one seed."""
    y, hit = pool["y"], hits_of(pool["y"])
    bo = campaign_order(pool, seed, "nehvi", surrogate, MO_TARGETS)
    rnd = random_order(len(y), seed)
    return {"seed": seed,
            "bo_hv": curve(bo, lambda t: hypervolume(y[t])),
            "random_hv": curve(rnd, lambda t: hypervolume(y[t])),
            "bo_hits": curve(bo, lambda t: int(hit[t].sum())),
            "random_hits": curve(rnd, lambda t: int(hit[t].sum()))}


def summarize_mo(rows: list[dict], pool: dict, surrogate: str, t_feat: float) -> dict:
    """Hypervolume at the budget, BoTorch vs random (mean, std over seeds, every seed)."""
    rows = sorted(rows, key=lambda r: r["seed"])
    hv_pool = hypervolume(pool["y"])
    bo = np.array([r["bo_hv"][-1] for r in rows])
    rnd = np.array([r["random_hv"][-1] for r in rows])
    ratio = bo / np.maximum(rnd, 1e-12)

    def sd(a: np.ndarray) -> float:
        return float(a.std(ddof=1)) if len(a) > 1 else 0.0

    return {
        "pool": "mp20_reduced/test.csv + wbm_subset/wbm.csv.gz",
        "objectives": "maximise -(distance of band_gap to [1.5, 3] eV) and minimise "
                      "formation_energy_per_atom (eV/atom); acquisition qLogNEHVI",
        "hv_reference_point": list(HV_REF),
        "budget": INIT + BATCH * ROUNDS,
        "schedule": {"initial_random": INIT, "batch": BATCH, "rounds": ROUNDS},
        "surrogate": surrogate,
        "model": MODELS[surrogate] + "; one pick per reduced formula per batch",
        "seeds": [r["seed"] for r in rows],
        "hv_pool_max": hv_pool,
        "bo_hv_mean": float(bo.mean()), "bo_hv_std": sd(bo),
        "random_hv_mean": float(rnd.mean()), "random_hv_std": sd(rnd),
        "hv_ratio_vs_random_mean": float(ratio.mean()), "hv_ratio_vs_random_std": sd(ratio),
        "bo_hv_fraction_of_pool_max_mean": float(bo.mean() / hv_pool),
        "random_hv_fraction_of_pool_max_mean": float(rnd.mean() / hv_pool),
        "feature_seconds": t_feat,
        "seconds_per_seed_max": max(r["seconds"] for r in rows),
        "cpu_seconds_per_seed_max": max(r["cpu_seconds"] for r in rows),
        "per_seed": rows,
        "command": "python benchmarks/campaign_acceleration.py --objectives two --seeds "
                   f"{','.join(str(r['seed']) for r in rows)} --surrogate {surrogate}",
        "machine": "2 shared CPU cores (loaded by other jobs), OMP_NUM_THREADS=1",
    }


MODELS = {
    "gp": "ModelListGP of SingleTaskGP (one per label, constant mean, BoTorch default kernel) on "
          "38 composition + cell features",
    "prior_gp": "ModelListGP of SingleTaskGP (one per label) around the shipped property "
                "predictors: prior mean = predicted mean (+ learned bias), kernel = learned scale "
                "x predicted std(x) std(x') x Matern-5/2 ARD over the predicted means; labels "
                "nearly exact (noise 1e-4)",
    "prior_only": "the shipped property predictors' means and std deviations, never updated "
                  "(PoolEnsembleModel); no learning from the labels",
}


def summarize(rows: list[dict], base: float, pool_size: int, hits_in_pool: int, kind: str,
              t_feat: float, surrogate: str = "gp") -> dict:
    """The result table: acceleration factor and hits over seeds (mean, std)."""
    budget = INIT + BATCH * ROUNDS
    rows = sorted(rows, key=lambda r: r["seed"])
    af = np.array([r["af_vs_expected_random"] for r in rows])
    rnd_final = np.array([r["random_hits"][-1] for r in rows], dtype=float)
    bo_final = np.array([r["bo_hits"][-1] for r in rows], dtype=float)
    # selection phase only (the shared random initial batch removed from both)
    sel_af = np.array([(r["bo_hits"][-1] - r["bo_hits"][0]) / (base * BATCH * ROUNDS)
                       for r in rows])
    vs_sim = np.array([r["bo_hits"][-1] / max(r["random_hits"][-1], 1) for r in rows])

    def sd(a: np.ndarray) -> float:
        return float(a.std(ddof=1)) if len(a) > 1 else 0.0

    return {
        "pool": "mp20_reduced/test.csv + wbm_subset/wbm.csv.gz",
        "pool_size": pool_size,
        "objective": f"band_gap in [{GAP_LO}, {GAP_HI}] eV and formation_energy_per_atom <= "
                     f"{EFORM_MAX} eV/atom",
        "hits_in_pool": hits_in_pool,
        "base_rate": base,
        "budget": budget,
        "schedule": {"initial_random": INIT, "batch": BATCH, "rounds": ROUNDS},
        "acquisition": kind,
        "surrogate": surrogate,
        "model": MODELS[surrogate] + "; window constraints; one pick per reduced formula per "
                                     "batch",
        "seeds": [r["seed"] for r in rows],
        "acceleration_factor_definition": "BoTorch hits at the budget / (budget x base rate)",
        "acceleration_factor_mean": float(af.mean()),
        "acceleration_factor_std": sd(af),
        "selection_phase_af_mean": float(sel_af.mean()),
        "selection_phase_af_std": sd(sel_af),
        "ratio_vs_simulated_random_mean": float(vs_sim.mean()),
        "ratio_vs_simulated_random_std": sd(vs_sim),
        "bo_hits_mean": float(bo_final.mean()),
        "bo_hits_std": sd(bo_final),
        "random_hits_mean": float(rnd_final.mean()),
        "random_hits_std": sd(rnd_final),
        "random_hits_expected": base * budget,
        "feature_seconds": t_feat,
        "seconds_per_seed_max": max(r["seconds"] for r in rows),
        "cpu_seconds_per_seed_max": max(r.get("cpu_seconds", float("nan")) for r in rows),
        "per_seed": rows,
        "command": "python benchmarks/campaign_acceleration.py --seeds "
                   f"{','.join(str(r['seed']) for r in rows)} --surrogate {surrogate} "
                   f"--kind {kind}",
        "machine": "2 shared CPU cores (loaded by other jobs), OMP_NUM_THREADS=1",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    ap.add_argument("--kind", default="pof", choices=["pof", "margin_nei"])
    ap.add_argument("--surrogate", default="prior_gp", choices=sorted(MODELS))
    ap.add_argument("--objectives", default="one", choices=["one", "two"],
                    help="one: hits in the window (acceleration); two: qLogNEHVI hypervolume")
    ap.add_argument("--merge", nargs="*", default=None,
                    help="merge the per_seed rows of these result files instead of running")
    ap.add_argument("--out", default=None,
                    help="result file (default: results/campaign_acceleration[_SURROGATE].json, "
                         "no suffix for gp, _mo_SURROGATE for two objectives)")
    args = ap.parse_args()
    if args.out is None:
        tag = ("_mo_" + args.surrogate if args.objectives == "two"
               else "" if args.surrogate == "gp" else "_" + args.surrogate)
        args.out = str(Path(__file__).parent / "results" / f"campaign_acceleration{tag}.json")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    t0 = time.time()
    pool = load_pool()
    t_feat = time.time() - t0
    if args.surrogate != "gp":
        pred = load_predictions(len(pool["y"]))
        pool.update(prior_mean=pred["prior_mean"], prior_std=pred["prior_std"])
        t_feat += pred["seconds"]
    hit = hits_of(pool["y"])
    base = float(hit.mean())
    budget = INIT + BATCH * ROUNDS
    rows = []
    if args.objectives == "two":
        for seed in ([] if args.merge else (int(x) for x in args.seeds.split(","))):
            t, c = time.time(), time.process_time()
            rows.append({**run_mo(pool, seed, args.surrogate), "seconds": time.time() - t,
                         "cpu_seconds": time.process_time() - c})
            print(json.dumps(rows[-1]), flush=True)
        for f in args.merge or []:
            rows += json.loads(Path(f).read_text())["per_seed"]
        result = summarize_mo(rows, pool, args.surrogate, t_feat)
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"HV at the budget: BoTorch {result['bo_hv_mean']:.3f} +- "
              f"{result['bo_hv_std']:.3f} vs random {result['random_hv_mean']:.3f} +- "
              f"{result['random_hv_std']:.3f} (pool max {result['hv_pool_max']:.3f})")
        return
    if args.merge:
        for f in args.merge:
            rows += json.loads(Path(f).read_text())["per_seed"]
    else:
        for seed in (int(x) for x in args.seeds.split(",")):
            t, c = time.time(), time.process_time()
            bo = run_bo(pool, seed, args.kind, args.surrogate)
            rnd = run_random(pool, seed)
            rows.append({"seed": seed, "bo_hits": bo, "random_hits": rnd,
                         "af_vs_expected_random": bo[-1] / (base * budget),
                         "bo_hits_after_init": bo[-1] - bo[0],
                         "seconds": time.time() - t,
                         "cpu_seconds": time.process_time() - c})
            print(json.dumps(rows[-1]), flush=True)
    result = summarize(rows, base, len(hit), int(hit.sum()), args.kind, t_feat, args.surrogate)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"AF = {result['acceleration_factor_mean']:.2f} +- "
          f"{result['acceleration_factor_std']:.2f} over {len(rows)} seeds (BoTorch "
          f"{result['bo_hits_mean']:.1f} hits vs random {result['random_hits_mean']:.1f}, "
          f"expected {base * budget:.1f}; base rate {base:.4f})")


if __name__ == "__main__":
    main()

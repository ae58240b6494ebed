"""Generative-campaign benchmark: what generation, BoTorch, active learning and a learning
generator each add to a discovery campaign, at an equal oracle budget (issue 22).

Every arm runs the real campaign (:class:`matgen.campaign.Campaign`, the engine the Prefect
flows and ``matgen campaign run`` drive) on the shipped default generator, scored by CHGNet
(relaxation, energy above the MP hull, the shipped property predictors with uncertainty):

* A: unconditioned generation + random selection;
* B: conditioned generation (the objectives' windows) + random selection;
* C: unconditioned generation + BoTorch selection;
* D: the full loop: conditioned generation + BoTorch + active learning (the scorer's
  predictors refit on the oracle labels after every round);
* E: D + the generator fine-tuned on the labelled hits (``generator.finetune``);
* F: E with ``generator.finetune.replay_fill``: each fine-tuning set has ``steps x batch``
  rows (the hits repeated to fill the ``1 - replay`` share, the rest distinct training rows)
  instead of the hits plus as many replayed rows (a few hits: many passes over a few crystals);
* G: F with ``generator.finetune.rows: labelled``: every labelled candidate, hit or not, trains
  with its own oracle labels as conditions (the condition map, not only the hit set);
* H: F with ``generator.finetune.skip_suspects``: hits more than 0.05 eV/atom below the known
  hull by the oracle are left out of the fine-tuning set (the MLIP's optimism is not taught).

Oracle (what the campaign learns from): the MLIP oracle (a tighter CHGNet relaxation, energy
above the MP hull) for stability, and for the band-gap window an independent judge the
scorer never sees. Default judge (``--judge composition``): extremely randomised trees on
composition features fitted on mp20_reduced val + test, data held apart from the scorer's
predictors (trained on the train split); ``--judge ensemble`` uses the hit-rate benchmark's
judge, the shipped band-gap deep ensemble, which is also the scorer's starting predictor and
so not independent of it. Validity and the judge's predictions come from the hit-rate
benchmark's ``_judge`` (CDVAE validity: SMACT + 0.5 Å distances).

Hit: oracle ``e_above_hull <= 0.05`` eV/atom, judged band gap inside the window (default
1-3 eV), valid, novel: no StructureMatcher match in mp20_reduced train (the campaign's own
dedup), val or test (the MP hull references, ``hull_refs``, are compositions without
structures: a composition absent from them is reported as ``new_composition``).

Per arm (mean and 95 % t-interval over seeds): hits per oracle call, distinct reduced formulas
among hits (and their share), novelty, the share of suspects (oracle energy more than 0.05
eV/atom below the known hull), the exploitation gap (scorer prediction minus oracle value over
the selected batches: mean and mean absolute), hits per call relative to A and to D, and for E
and F the generator versions and the diversity guard.

Usage (the acceptance scale, 5 arms x 3 seeds x 60 labels, on a GPU machine)::

    python benchmarks/generative_campaign.py --device cuda --seeds 0,1,2 --rounds 5 \\
        --labels 60 --pool-per-round 96 --finetune-steps 200 \\
        --out benchmarks/results/generative_campaign_gpu.json

Reduced CPU scale: ``--seeds 0,1 --rounds 3 --labels 9 --pool-per-round 12``.
``--paired-over FILE [FILE ...]`` prints arm H's paired comparison with D over the seeds of
several result files (the CPU seeds and a GPU batch) and runs nothing.
Arms F, G and H are not run by default: ``--arms F,G,H`` (same other settings, same ``--out``) adds
them to existing results. Results are written after every arm and seed; a killed run resumes (the
campaigns resume in their stores under ``--work``). Processes running other arms or seeds with
the same settings may write the same ``--out`` at once: each write merges the results already
in the file (under a lock, then an atomic replace).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import pickle
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from conditional_hit_rate import _judge  # the hit-rate benchmark's judge

ARMS = {
    "A": {"conditioned": False, "acquisition": "random", "finetune": False},
    "B": {"conditioned": True, "acquisition": "random", "finetune": False},
    "C": {"conditioned": False, "acquisition": "auto", "finetune": False},
    "D": {"conditioned": True, "acquisition": "auto", "finetune": False},
    "E": {"conditioned": True, "acquisition": "auto", "finetune": True},
    "F": {"conditioned": True, "acquisition": "auto", "finetune": True, "replay_fill": True},
    "G": {"conditioned": True, "acquisition": "auto", "finetune": True, "replay_fill": True,
          "rows": "labelled"},
    "H": {"conditioned": True, "acquisition": "auto", "finetune": True, "replay_fill": True,
          "skip_suspects": True},
}
STABLE = 0.05  # eV/atom above the hull


# ---------------------------------------------------------------------------------- judge
def _comp_features(formulas) -> np.ndarray:
    """Element fractions (Z 1-94) + fraction-weighted mean / spread of Z, electronegativity,
    row, group and atomic mass."""
    from pymatgen.core import Composition, Element

    props: dict[str, np.ndarray] = {}
    out = np.zeros((len(formulas), 94 + 10))
    for i, f in enumerate(formulas):
        comp = Composition(f).fractional_composition
        w, vals = [], []
        for el, x in comp.items():
            el = Element(str(el))
            if el.Z <= 94:
                out[i, el.Z - 1] = x
            if el.symbol not in props:
                props[el.symbol] = np.nan_to_num(
                    np.array([el.Z, el.X, el.row, el.group, float(el.atomic_mass)], float)
                )
            w.append(x)
            vals.append(props[el.symbol])
        w, vals = np.asarray(w), np.asarray(vals)
        mean = w @ vals
        out[i, 94:99] = mean
        out[i, 99:104] = np.sqrt(np.maximum(w @ (vals - mean) ** 2, 0.0))
    return out


class CompositionJudge:
    """The independent band-gap judge: extremely randomised trees on composition features,
    fitted on data held apart from the scorer's predictors (mp20_reduced val + test)."""

    label = "band_gap"

    def __init__(self, data_dir: Path, cache: Path) -> None:
        import pandas as pd
        from sklearn.ensemble import ExtraTreesRegressor

        if cache.is_file():
            self.model, self.metrics = pickle.loads(cache.read_bytes())
            return
        df = pd.concat([pd.read_csv(data_dir / "mp20_reduced" / f"{s}.csv",
                                    usecols=["pretty_formula", "band_gap"])
                        for s in ("val", "test")], ignore_index=True)
        X, y = _comp_features(df["pretty_formula"]), df["band_gap"].to_numpy(float)
        rng = np.random.default_rng(0)
        test = rng.random(len(y)) < 0.1
        model = ExtraTreesRegressor(n_estimators=300, min_samples_leaf=2, random_state=0, n_jobs=1)
        model.fit(X[~test], y[~test])
        self.metrics = {"n_fit": int((~test).sum()), "n_holdout": int(test.sum()),
                        "holdout_mae": float(np.mean(np.abs(model.predict(X[test]) - y[test])))}
        model.fit(X, y)
        self.model = model
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps((self.model, self.metrics)))

    def predict(self, structures) -> SimpleNamespace:
        forms = [s.composition.reduced_formula for s in structures]
        return SimpleNamespace(mean=self.model.predict(_comp_features(forms)))


def build_judge(kind: str, data_dir: Path, work: Path):
    if kind == "ensemble":
        from matgen.surrogates import PropertyPredictor

        return PropertyPredictor.load(ROOT / "matgen" / "assets" / "predictors" / "band_gap")
    return CompositionJudge(data_dir, work / "judge_composition.pkl")


def judge_structures(cifs: list[str], predictor) -> dict:
    """CDVAE validity and the judge's band gap of CIFs (through the hit-rate benchmark's
    ``_judge``, which reads an extxyz file)."""
    from ase.io import write
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = [AseAtomsAdaptor.get_atoms(Structure.from_str(c, fmt="cif")) for c in cifs]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "judge.extxyz"
        write(path, atoms, format="extxyz")
        return _judge(path, predictor)


class JudgedOracle:
    """The benchmark's oracle: the MLIP oracle (stability) + the independent band-gap judge."""

    synchronous = True

    def __init__(self, mlip: str, fmax: float, steps: int, judge) -> None:
        from matgen.campaign import MLIPOracle

        self.mlip = MLIPOracle(fmax=fmax, steps=steps, mlip=mlip)
        self.judge = judge
        self.name = f"{self.mlip.name}+judge:band_gap"

    def request(self, candidates, round_index: int) -> dict[str, dict[str, float]]:
        out = self.mlip.request(candidates, round_index)
        j = judge_structures([c["cif"] for c in candidates], self.judge)
        for c, ok, bg in zip(candidates, j["valid"], j["pred"], strict=True):
            out[c["id"]]["band_gap"] = float(bg) if ok else float("nan")
        return out


# ---------------------------------------------------------------------------------- campaign
def campaign_config(arm: str, seed: int, args, work: Path):
    from matgen.campaign import CampaignConfig

    spec = ARMS[arm]
    gen = {"kind": "model", "checkpoint": str(args.checkpoint) if args.checkpoint else None,
           "steps": args.steps, "sampler": "fast", "guidance": args.guidance,
           "chunk_size": args.chunk_size, "conditioned": spec["conditioned"]}
    if spec["finetune"]:
        gen["finetune"] = {"every": args.finetune_every, "steps": args.finetune_steps,
                           "replay": args.replay, "batch_size": args.finetune_batch,
                           "min_distinct_share": args.min_distinct_share,
                           "replay_csv": str(args.data / "mp20_reduced" / "train.csv"),
                           "device": args.device}
        if spec.get("replay_fill"):  # not in E's config: its stored campaigns stay valid
            gen["finetune"]["replay_fill"] = True
        if spec.get("rows"):  # G: every labelled candidate, not only the hits
            gen["finetune"]["rows"] = spec["rows"]
        if spec.get("skip_suspects"):  # H: the oracle's suspects are not taught
            gen["finetune"]["skip_suspects"] = True
    return CampaignConfig.model_validate({
        "name": f"gc-{arm}-s{seed}",
        "seed": seed,
        "rounds": args.rounds,
        "pool_size": args.pool_per_round,
        "batch_size": args.batch,
        "objectives": [
            {"property": "e_above_hull", "maximum": STABLE, "scale": 0.05},
            {"property": "band_gap", "minimum": args.window[0], "maximum": args.window[1],
             "scale": 0.5},
        ],
        "generator": gen,
        "scorer": {"kind": "surrogates", "mlip": args.mlip, "relax": True,
                   "relax_steps": args.relax_steps, "fmax": 0.1, "chunk_size": args.chunk_size},
        # the labels come from the injected JudgedOracle; "lab" declares what it labels
        "oracle": {"kind": "lab", "properties": ["e_above_hull", "band_gap"]},
        "acquisition": {"kind": spec["acquisition"], "min_labels_for_gp": args.batch},
        "train_csv": str(args.data / "mp20_reduced" / "train.csv"),
        "work_dir": str(work / f"{arm}_s{seed}"),
        "export_on_finish": False,
    })


def _held_out_index(data_dir: Path) -> dict[str, list[str]]:
    from matgen.campaign._novelty import training_formulas

    idx: dict[str, list[str]] = {}
    for split in ("val", "test"):
        for f, cifs in training_formulas(str(data_dir / "mp20_reduced" / f"{split}.csv")).items():
            idx.setdefault(f, []).extend(cifs)
    return idx


def _matches_any(cif: str, refs: list[str]) -> bool:
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

    if not refs:
        return False
    sm, s = StructureMatcher(), Structure.from_str(cif, fmt="cif")
    return any(sm.fit(s, Structure.from_str(r, fmt="cif")) for r in refs)


def _hull_compositions(data_dir: Path) -> set[str]:
    import pandas as pd
    from pymatgen.core import Composition

    df = pd.read_csv(data_dir / "hull_refs" / "mp_e_form_compositions.csv.gz")
    col = next(c for c in df.columns if "comp" in c.lower() or "formula" in c.lower())
    out = set()
    for f in df[col]:
        with contextlib.suppress(Exception):  # an unreadable reference composition is skipped
            out.add(Composition(f).reduced_formula)
    return out


def arm_result(camp, spec: dict, ctx: dict) -> dict:
    """Hits and the other per-arm numbers of one finished campaign."""
    from matgen.surrogates._score import is_suspect  # the campaign's own 0.05 eV/atom rule

    store = camp.store
    labels = store.labels()
    subs = store.submissions()
    called = [s for s in subs if s["status"] in ("done", "failed")]
    cands = {c.id: c for c in store.candidates(selected=True)}
    labelled = [cands[s["candidate_id"]] for s in called if s["candidate_id"] in cands]
    valid = judge_structures([c.cif for c in labelled], ctx["judge"])["valid"] if labelled else []
    rows, gaps = [], {"e_above_hull": [], "band_gap": []}
    for c, ok in zip(labelled, valid, strict=True):
        lab = labels.get(c.id, {})
        e, bg = lab.get("e_above_hull"), lab.get("band_gap")
        stable = e is not None and e <= STABLE
        window = bg is not None and ctx["window"][0] <= bg <= ctx["window"][1]
        novel = not _matches_any(c.cif, ctx["held_out"].get(c.reduced_formula, []))
        rows.append({"id": c.id, "formula": c.reduced_formula, "round": c.round_index,
                     "e_above_hull": e, "band_gap": bg, "valid": bool(ok), "novel": novel,
                     "new_composition": c.reduced_formula not in ctx["hull_comps"],
                     "suspect": is_suspect(e),
                     "hit": bool(ok and novel and stable and window)})
        for p, gap in gaps.items():
            pred = (c.scores or {}).get(p)
            if pred is not None and lab.get(p) is not None:
                gap.append(float(pred) - float(lab[p]))
    hits = [r for r in rows if r["hit"]]
    n = max(len(rows), 1)
    forms = {r["formula"] for r in hits}
    rounds = store.rounds()
    return {
        "labels": len(rows),
        "hits": len(hits),
        "hits_per_call": len(hits) / n,
        "hits_excluding_suspects": sum(r["hit"] and not r["suspect"] for r in rows),
        "distinct_hit_formulas": len(forms),
        "distinct_hit_share": len(forms) / len(hits) if hits else math.nan,
        "novel_share": sum(r["novel"] for r in rows) / n,
        "new_composition_share": sum(r["new_composition"] for r in rows) / n,
        "valid_share": sum(r["valid"] for r in rows) / n,
        "stable_share": sum(r["e_above_hull"] is not None and r["e_above_hull"] <= STABLE
                            for r in rows) / n,
        "window_share": sum(r["band_gap"] is not None and ctx["window"][0] <= r["band_gap"]
                            <= ctx["window"][1] for r in rows) / n,
        "suspect_share": sum(r["suspect"] for r in rows) / n,
        "exploitation_gap": {p: {"mean": float(np.mean(g)) if g else math.nan,
                                 "mae": float(np.mean(np.abs(g))) if g else math.nan}
                             for p, g in gaps.items()},
        "generator_versions": [r.get("generator_version") for r in rounds],
        "finetune": [((r.get("metrics") or {}).get("generator") or {}) for r in rounds],
        "candidates": rows,
    }


def run_arm(arm: str, seed: int, args, work: Path, ctx: dict) -> dict:
    from matgen.campaign import Campaign

    cfg = campaign_config(arm, seed, args, work)
    oracle = JudgedOracle(args.mlip, args.oracle_fmax, args.oracle_steps, ctx["judge"])
    camp = Campaign(cfg, oracle=oracle)
    t0 = time.perf_counter()
    camp.run(rounds=args.rounds)
    res = arm_result(camp, ARMS[arm], ctx)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    camp.store.dispose()
    return res


# ---------------------------------------------------------------------------------- summary
def _ci(values: list[float]) -> dict:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if len(v) == 0:
        return {"mean": math.nan, "ci95": math.nan, "n": 0}
    if len(v) == 1:
        return {"mean": float(v[0]), "ci95": math.nan, "n": 1}
    from scipy.stats import t

    half = float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return {"mean": float(v.mean()), "ci95": half, "n": len(v)}


def summarise(per_seed: dict[str, dict[str, dict]]) -> dict:
    keys = ("hits_per_call", "hits", "distinct_hit_formulas", "distinct_hit_share",
            "novel_share", "new_composition_share", "valid_share", "stable_share",
            "window_share", "suspect_share")
    out = {}
    for arm, seeds in per_seed.items():
        rs = list(seeds.values())
        s = {k: _ci([r[k] for r in rs]) for k in keys}
        for p in ("e_above_hull", "band_gap"):
            for m in ("mean", "mae"):
                s[f"exploitation_{p}_{m}"] = _ci([r["exploitation_gap"][p][m] for r in rs])
        out[arm] = s
    for ref in ("A", "D"):  # D: what fine-tuning (E, F) adds to the full loop
        r = out.get(ref, {}).get("hits_per_call", {}).get("mean")
        for s in out.values():
            s[f"hits_per_call_vs_{ref}"] = s["hits_per_call"]["mean"] / r if r else math.nan
    for arm, s in out.items():
        if arm != "D" and "D" in per_seed:
            s["paired_vs_D"] = paired_vs(per_seed[arm], per_seed["D"])
    return out


def paired_vs(arm: dict[str, dict], ref: dict[str, dict]) -> dict:
    """Paired comparison of an arm with a reference arm over the seeds both have: per-seed
    differences of hits and of distinct hit formulas, their mean, and the two-sided paired
    t-test and Wilcoxon signed-rank p-values (``None`` below 3 pairs or with no difference)."""
    from scipy import stats

    seeds = sorted(set(arm) & set(ref), key=int)
    out: dict = {"seeds": seeds}
    for key in ("hits", "distinct_hit_formulas"):
        diff = [arm[k][key] - ref[k][key] for k in seeds]
        row: dict = {"diff": diff, "mean_diff": float(np.mean(diff)) if diff else math.nan,
                     "t_test_p": None, "wilcoxon_p": None}
        if len(diff) >= 3 and any(diff):
            row["t_test_p"] = float(stats.ttest_1samp(diff, 0.0).pvalue)
            row["wilcoxon_p"] = float(stats.wilcoxon(diff).pvalue)
        out[key] = row
    return out


def _git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data = Path(os.environ.get("MATGEN_DATA_DIR", ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--arms", default="A,B,C,D,E")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--labels", type=int, default=60, help="oracle calls per arm and seed")
    ap.add_argument("--pool-per-round", type=int, default=96)
    ap.add_argument("--window", default="1:3", help="band-gap window, eV")
    ap.add_argument("--judge", default="composition", choices=["composition", "ensemble"])
    ap.add_argument("--mlip", default="chgnet", choices=["chgnet", "sevennet", "sevennet-0"])
    ap.add_argument("--relax-steps", type=int, default=60)
    ap.add_argument("--oracle-fmax", type=float, default=0.05)
    ap.add_argument("--oracle-steps", type=int, default=150)
    ap.add_argument("--steps", type=int, default=50, help="sampler steps (fast ODE)")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--chunk-size", type=int, default=32)
    ap.add_argument("--finetune-every", type=int, default=1)
    ap.add_argument("--finetune-steps", type=int, default=200)
    ap.add_argument("--finetune-batch", type=int, default=32)
    ap.add_argument("--replay", type=float, default=0.5)
    ap.add_argument("--min-distinct-share", type=float, default=0.5)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="generator checkpoint (default: the shipped model); its weights id is a "
                    "setting, so seeds resumed after the default changes keep the same generator")
    ap.add_argument("--data", type=Path, default=data)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench" / "generative_campaign")
    ap.add_argument("--note", default="")
    ap.add_argument("--paired-over", type=Path, nargs="+", metavar="FILE",
                    help="print arm H's paired comparison with D over these results files' "
                         "seeds and exit (no campaign runs)")
    ap.add_argument("--out", type=Path,
                    default=ROOT / "benchmarks" / "results" / "generative_campaign_cpu.json")
    args = ap.parse_args()
    args.window = tuple(float(x) for x in args.window.split(":"))
    if args.labels % args.rounds:
        ap.error("--labels must be a multiple of --rounds (the batch per round)")
    args.batch = args.labels // args.rounds
    from matgen.generate import DEFAULT_MODEL_DIR, weights_id

    args.generator_weights = weights_id(args.checkpoint or DEFAULT_MODEL_DIR)
    if args.batch > args.pool_per_round:
        ap.error("--labels / --rounds must be <= --pool-per-round")
    return args


def pooled_paired(paths: list[Path], arm: str = "H") -> dict:
    """``paired_vs`` of ``arm`` against D over the seeds of several result files (e.g. the CPU
    seeds and a GPU batch, whose settings differ only in ``device``); a seed present in two
    files is an error, not a silent overwrite."""
    arms: dict[str, dict] = {arm: {}, "D": {}}
    for path in paths:
        per_seed = json.loads(Path(path).read_text()).get("per_seed", {})
        for a, seen in arms.items():
            for seed, res in per_seed.get(a, {}).items():
                if seed in seen:
                    raise SystemExit(f"{path}: arm {a} seed {seed} is also in an earlier file")
                seen[seed] = res
    return paired_vs(arms[arm], arms["D"])


def main() -> None:
    args = _args()
    if args.paired_over:
        print(json.dumps(pooled_paired(args.paired_over), indent=1))
        return
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available")
    elif args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("MATGEN_DATA_DIR", str(args.data))
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    ctx = {"judge": build_judge(args.judge, args.data, work), "window": args.window,
           "held_out": _held_out_index(args.data), "hull_comps": _hull_compositions(args.data)}
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    # results of other seeds / arms with the same settings are kept (and resumed)
    same = _key(previous.get("settings") or {}) == _key(_settings(args))
    per_seed: dict[str, dict[str, dict]] = previous.get("per_seed", {}) if same else {}
    args.superseded = previous.get("superseded")  # earlier results kept for the record
    args.commands = [*(previous.get("commands") or [previous.get("command")] if same else []),
                     _command()]
    t0 = time.perf_counter()
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in args.arms.split(","):
            if str(seed) in per_seed.get(arm, {}):
                continue
            print(f"arm {arm}, seed {seed} ...", flush=True)
            res = run_arm(arm, seed, args, work, ctx)
            per_seed.setdefault(arm, {})[str(seed)] = res
            print(f"arm {arm}, seed {seed}: {res['hits']}/{res['labels']} hits, "
                  f"{res['seconds']} s", flush=True)
            _write(args, ctx, per_seed, time.perf_counter() - t0)


def _command() -> str:
    script = Path(sys.argv[0]).resolve()
    script = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return "python " + " ".join(shlex.quote(a) for a in [str(script), *sys.argv[1:]])


def _settings(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k not in ("note", "out", "work", "data", "commands", "superseded", "checkpoint")}


def _key(settings: dict) -> str:
    """What must agree for earlier results to be kept: the settings but seeds and arms."""
    return json.dumps({k: v for k, v in settings.items() if k not in ("seeds", "arms")},
                      sort_keys=True, default=str)


def merge_per_seed(mine: dict, theirs: dict) -> dict:
    """``mine`` (arm -> seed -> result) with the results of ``theirs`` it lacks added (in
    place: its own results win), arms and seeds in order."""
    for arm, seeds in theirs.items():
        for seed, res in seeds.items():
            mine.setdefault(arm, {}).setdefault(seed, res)
    ordered = {a: dict(sorted(mine[a].items(), key=lambda kv: int(kv[0]))) for a in sorted(mine)}
    mine.clear()
    mine.update(ordered)
    return mine


@contextlib.contextmanager
def _out_lock(path: Path):
    """An exclusive ``flock`` on ``path``'s folder (the file itself is replaced on write, and a
    lock file would be left beside the results)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _merge_file(args, per_seed: dict) -> None:
    """Merge into ``per_seed`` (and ``args.commands``) what another process running the same
    settings wrote to ``--out`` since this one read it."""
    try:
        theirs = json.loads(args.out.read_text())
    except (OSError, ValueError):
        return
    if _key(theirs.get("settings") or {}) != _key(_settings(args)):
        return
    merge_per_seed(per_seed, theirs.get("per_seed") or {})
    cmds = theirs.get("commands") or []
    args.commands = [*cmds, *(c for c in args.commands if c not in cmds)]


def _write(args, ctx: dict, per_seed: dict, seconds: float) -> None:
    from matgen._files import atomic_write_text

    with _out_lock(args.out):
        _merge_file(args, per_seed)
        atomic_write_text(args.out, json.dumps(_record(args, ctx, per_seed, seconds), indent=1,
                                               default=float) + "\n")


def _record(args, ctx: dict, per_seed: dict, seconds: float) -> dict:
    import torch

    judge = ctx["judge"]
    return {
        "command": _command(),
        "commands": [c for c in args.commands if c],
        "git_commit": _git_commit(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "torch_threads": torch.get_num_threads()},
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "note": args.note,
        "settings": _settings(args),
        "hit_rule": f"oracle e_above_hull <= {STABLE} eV/atom (CHGNet, fmax "
                    f"{args.oracle_fmax}, {args.oracle_steps} steps) and judged band gap in "
                    f"[{args.window[0]}, {args.window[1]}] eV and CDVAE-valid and no "
                    "StructureMatcher match in mp20_reduced train/val/test",
        "judge": {"kind": args.judge, "metrics": getattr(judge, "metrics", None),
                  "independent_of_scorer": args.judge == "composition"},
        "wall_seconds_this_invocation": round(seconds, 1),
        "arm_seconds_total": round(sum(r["seconds"] for v in per_seed.values()
                                       for r in v.values()), 1),
        "summary": summarise(per_seed),
        **({"superseded": args.superseded} if args.superseded else {}),
        "per_seed": per_seed,
    }


if __name__ == "__main__":
    main()

"""The measured part of a lineage stage's record, from what ``finetune_sweep.sh`` brought back.

A stage call (``benchmarks/device/finetune_sweep.sh`` with ``FETCH``) returns ``results.tgz``:
``runs/NAME/run/metrics.csv`` (training), ``sweeps/NAME.tgz`` (the sampler sweep's metrics and
per-structure tables), ``gpu_util.csv`` (nvidia-smi every 10 s). This gathers from it, for one run:
the training record (steps, crystals seen, val loss by step), the GPU's busy share, the sweep
summary (``sweep_summary.py``), the loose share of the public-test matches and the familiarity
breakdown of each CSP table (``csp_train_val_gap.py``), and applies the lineage rule's point 1
(continue at the same LR / at a lower LR / from the previous stage) and point 2 (candidate for
the default) with the thresholds given, which it records beside the verdicts. The rule file
stays the place where the thresholds are written first; the verdicts are read from it again
by whoever writes the note.

    tar xzf results.tgz -C /tmp/r31
    python benchmarks/stage_record.py /tmp/r31 --run l31 --data-dir $D/mp20_reduced \\
        --previous l30s --previous-val 986 0.1035 --out /tmp/r31/record.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tarfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import read_metrics  # one reading of a run's metrics.csv
from sweep_summary import summarise  # one reading of a sweep folder

VALUE = "0.7"  # the sweep value the lineage's stages are scored at (clash floor 0.7)


def training(run_dir: Path, checkpoint: Path | None = None) -> dict:
    """Steps, speed, crystals seen and the val loss by step of one run (``config.yaml`` gives the
    crystals per step, all GPUs together, as ``ablation.py collect`` reads them). Where the call
    brought back the sweep but not the training metrics (the machine released before the results
    were packed: round 32), ``checkpoint`` (the run's exported ``model.json``) gives the steps
    and the batch, and the record says where they came from."""
    import yaml

    metrics_csv = run_dir / "run" / "metrics.csv"
    rows = read_metrics(metrics_csv)
    if not rows and checkpoint is not None:
        from matgen.generate import read_metadata

        meta = read_metadata(checkpoint)
        steps, batch = int(meta["step"]), int(meta["config"]["batch_size"])
        return {"steps": steps, "batch": batch, "crystals_seen": steps * batch,
                "source": f"{checkpoint / 'model.json'} ({metrics_csv} not brought back)"}
    if not rows:
        raise SystemExit(f"error: {metrics_csv}: missing or no training rows "
                         f"(is {run_dir.parent.parent} an extracted results.tgz? "
                         "--checkpoint reads the steps from the exported weights)")
    batch = int(yaml.safe_load((run_dir / "config.yaml").read_text())["batch_size"])
    last = rows[-1]
    steps = int(last["step"])
    return {"steps": steps, "batch": batch, "crystals_seen": steps * batch,
            "steps_per_s_last": float(last["steps_per_s"]),
            "train_loss_last": float(last["loss"]),
            "val_loss_by_step": {r["step"]: float(r["val_loss"]) for r in rows if r["val_loss"]}}


def gpu_busy(util_csv: Path) -> dict | None:
    """Mean nvidia-smi utilisation over the samples where the GPU was not idle (the column is
    found by its header: some drivers log the GPU index before it)."""
    if not util_csv.exists():
        return None
    rows = list(csv.reader(util_csv.open(), skipinitialspace=True))
    col = next((i for i, h in enumerate(rows[0] if rows else []) if "utilization.gpu" in h), None)
    if col is None:
        return None
    busy = [float(r[col].rstrip("% ")) for r in rows[1:]
            if len(r) > col and r[col].strip().endswith("%")]
    active = [b for b in busy if b > 0]
    return {"samples": len(busy), "active_samples": len(active),
            "mean_busy_active": round(sum(active) / len(active), 1) if active else None}


def sweep_folder(results: Path, run: str) -> Path:
    """``sweeps/RUN`` (extracting ``sweeps/RUN.tgz`` there first when needed)."""
    folder = results / "sweeps" / run
    if not folder.is_dir():
        archive = results / "sweeps" / f"{run}.tgz"
        if not archive.exists():
            raise SystemExit(f"error: {results}: neither sweeps/{run}/ nor sweeps/{run}.tgz")
        with tarfile.open(archive) as tar:
            tar.extractall(results / "sweeps", filter="data")
    return folder


def csp_tables(folder: Path, data_dir: Path) -> dict:
    """Loose share and familiarity of every CSP per-structure table of the sweep."""
    import csp_train_val_gap as gap
    import pandas as pd

    train = pd.read_csv(data_dir / "train.csv").set_index("material_id")
    f_train, s_train = gap._formula_keys(train)
    out = {}
    suffix = ".csp_per_structure.csv"
    for table in sorted(folder.glob(f"csp_*_k{VALUE}_s*{suffix}")):
        key = table.name.removesuffix(suffix).removeprefix("csp_")
        split = pd.read_csv(data_dir / f"{key.split('_')[0]}.csv").set_index("material_id")
        per = pd.read_csv(table).set_index("material_id")
        f, s = gap._formula_keys(split)
        groups = gap.by_familiarity(per, gap.familiarity(f, s, f_train, s_train),
                                    gap.num_elements(s))
        fam = {k: {m: (round(v[m], 4) if isinstance(v[m], float) else v[m])
                   for m in ("rows", "matched", "rmse")}
               for k, v in groups.items() if k != "by_num_elements"}
        out[key] = {"all": gap.split_summary(per), "by_familiarity": fam}
    return out


def point1(new: dict, prev: tuple[int, float], gain: tuple[int, float],
           tol: tuple[int, float]) -> str:
    """The lineage rule's point 1 on pooled val (matches, RMSE) against the stage it continues."""
    m, r = new["num_matched"], new["rmse"]
    pm, pr = prev
    not_worse = m >= pm - tol[0] and r <= pr + tol[1]
    if not_worse and (m >= pm + gain[0] or r <= pr - gain[1]):
        return "gain: continue from this stage at the same peak LR"
    if not_worse:
        return "no gain, not worse: continue from this stage at the lower peak LR"
    return "worse: continue from the previous stage at the lower peak LR"


def point2(val: dict, gen: dict, a: argparse.Namespace) -> bool:
    """Round 28's candidate template: pooled val CSP and mean val de novo."""
    m, r = val["num_matched"], val["rmse"]
    csp = m >= a.cand_matches and (r <= a.cand_rmse or (m >= a.cand_matches_alt
                                                        and r <= a.cand_rmse_alt))
    return bool(csp and gen.get("struct_valid", 0) >= a.cand_struct
                and gen.get("comp_valid", 0) >= a.cand_comp
                and gen.get("wdist_density", 1e9) <= a.cand_density
                and gen.get("wdist_num_elements", 1e9) <= a.cand_nelem)


def record(a: argparse.Namespace) -> dict:
    results = a.results
    train = training(results / "runs" / a.run, a.checkpoint)
    folder = sweep_folder(results, a.run)
    summary, _ = summarise(folder)
    if VALUE not in summary or "val_csp_pooled" not in summary[VALUE]:
        raise SystemExit(f"error: {folder}: no val CSP at value {VALUE}")
    s = summary[VALUE]
    gen = next((v for k, v in s.items() if k.startswith("val_gen_mean")), {})
    tables = csp_tables(folder, a.data_dir)
    val_keys = [k for k in tables if k.startswith("val_")]
    pooled = {}
    for k in val_keys:
        for group, v in tables[k]["by_familiarity"].items():
            pooled[group] = pooled.get(group, 0) + v["matched"]
    out = {"run": a.run, "training": train, "gpu": gpu_busy(
        results / "gpu_util.csv"), "summary": summary, "csp_tables": tables,
        "val_pooled_matches_by_familiarity": pooled}
    test = tables.get(f"test_k{VALUE}_s0", {}).get("all")
    if test:
        out["loose_matches_public_test"] = {
            "matched": test["matched"], "loose": test["loose"],
            "loose_share": round(test["loose"] / test["matched"], 3) if test["matched"] else None}
    if a.previous_val is not None:
        prev = (int(a.previous_val[0]), float(a.previous_val[1]))
        out["point1"] = {"against": a.previous, "previous_val": list(prev),
                         "gain": [a.gain_matches, a.gain_rmse], "tolerance": [a.tol_matches,
                                                                              a.tol_rmse],
                         "verdict": point1(s["val_csp_pooled"], prev,
                                           (a.gain_matches, a.gain_rmse),
                                           (a.tol_matches, a.tol_rmse))}
    out["point2"] = {"thresholds": {k: getattr(a, k) for k in vars(a) if k.startswith("cand_")},
                     "candidate": point2(s["val_csp_pooled"], gen, a)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="folder where results.tgz was extracted")
    ap.add_argument("--run", required=True, help="the run's name (RUNS of the call)")
    ap.add_argument("--data-dir", type=Path, required=True, help="mp20_reduced: train/val/test")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="the run's exported weights: steps and batch when metrics.csv is absent")
    ap.add_argument("--previous", default=None, help="the stage this one continues (its name)")
    ap.add_argument("--previous-val", nargs=2, type=float, metavar=("MATCHES", "RMSE"),
                    help="its pooled val CSP: point 1 is judged against it")
    ap.add_argument("--gain-matches", type=int, default=20)
    ap.add_argument("--gain-rmse", type=float, default=0.004)
    ap.add_argument("--tol-matches", type=int, default=10)
    ap.add_argument("--tol-rmse", type=float, default=0.002)
    for name, default in (("matches", 989), ("rmse", 0.08), ("matches-alt", 1009),
                          ("rmse-alt", 0.086), ("struct", 0.998), ("comp", 0.851),
                          ("density", 0.205), ("nelem", 0.065)):
        ap.add_argument(f"--cand-{name}", type=type(default), default=default)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="No Pauling electronegativity")  # pymatgen, noble gases
    if not a.data_dir.joinpath("train.csv").exists():
        ap.error(f"--data-dir {a.data_dir}: no train.csv")
    out = record(a)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    val = out["summary"][VALUE]["val_csp_pooled"]
    print(f"{a.run}: {out['training']['steps']} steps; val {val['num_matched']} of "
          f"{val['num_references']} / RMSE {val['rmse']:.4f}; point 1: "
          f"{out.get('point1', {}).get('verdict', 'not judged')}; candidate: "
          f"{out['point2']['candidate']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

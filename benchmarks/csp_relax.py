"""CSP before and after an MLIP relaxation of the predictions: what `matgen score --relaxed-out`
adds to the generator's match rate and RMSE.

Runs the commands a user runs (``matgen evaluate --task csp`` on the generated file;
``matgen score --relaxed-out`` with the chosen MLIP; ``matgen evaluate`` on the relaxed file) and
joins the two per-structure tables: rows matched before / after, the RMS distance of rows matched
both times, loose matches (RMS > 0.2) that became tight and the reverse. Frames ``matgen score``
cannot read (atoms closer than 0.5 A) have no relaxed structure and count as unmatched after.

    python benchmarks/csp_relax.py --generated val300.extxyz --reference val300.csv --mlip chgnet \
        --device cpu --workers 2 --out benchmarks/results/csp_relax_val300_cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

KEYS = ("match_rate", "rmse", "num_matched", "num_references", "num_generated_evaluated",
        "generated_validity")


def _run(cmd: list[str], ok: tuple[int, ...] = (0,)) -> float:
    """Run a matgen command; its wall seconds. Exit codes outside ``ok`` raise."""
    t0 = time.time()
    rc = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL).returncode
    if rc not in ok:
        raise subprocess.CalledProcessError(rc, cmd)
    return round(time.time() - t0, 1)


def _evaluate(gen: Path, ref: Path, workers: int) -> tuple[dict, pd.DataFrame]:
    out, rows = gen.with_suffix(".csp.json"), gen.with_suffix(".csp_per_structure.csv")
    _run([sys.executable, "-m", "matgen", "evaluate", "--task", "csp", "--generated", str(gen),
          "--reference", str(ref), "--workers", str(workers), "--out", str(out),
          "--per-structure", str(rows)])
    per = pd.read_csv(rows).set_index("material_id")
    m = json.loads(out.read_text())
    return {k: m.get(k) for k in KEYS}, per[["matched", "rms_dist"]]


def compare(before: pd.DataFrame, after: pd.DataFrame) -> dict:
    """Per-reference changes between two per-structure CSP tables (one sample per reference)."""
    j = before.join(after, rsuffix="_after", how="left")
    m0 = j["matched"].eq(True)  # missing (no relaxed frame) counts as unmatched
    m1 = j["matched_after"].eq(True)
    both = j[m0 & m1]
    loose0, loose1 = both["rms_dist"] > 0.2, both["rms_dist_after"] > 0.2
    return {
        "matched_before": int(m0.sum()), "matched_after": int(m1.sum()),
        "gained": int((~m0 & m1).sum()), "lost": int((m0 & ~m1).sum()),
        "matched_both": len(both),
        "rms_both_mean_before": float(both["rms_dist"].mean()),
        "rms_both_mean_after": float(both["rms_dist_after"].mean()),
        "rms_both_median_before": float(both["rms_dist"].median()),
        "rms_both_median_after": float(both["rms_dist_after"].median()),
        "closer_after": int((both["rms_dist_after"] < both["rms_dist"]).sum()),
        "farther_after": int((both["rms_dist_after"] > both["rms_dist"]).sum()),
        "loose_before": int(loose0.sum()), "loose_after": int(loose1.sum()),
        "loose_to_tight": int((loose0 & ~loose1).sum()), "tight_to_loose": int((~loose0 & loose1).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generated", type=Path, required=True, help="CSP samples (extxyz)")
    ap.add_argument("--reference", type=Path, required=True, help="the references (CDVAE CSV)")
    ap.add_argument("--mlip", default="sevennet")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--fmax", type=float, default=0.1)
    ap.add_argument("--max-steps", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True, help="results JSON")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the relaxed structures and scores (default: beside "
                         "--generated); the evaluations' files land beside their inputs")
    a = ap.parse_args(argv)
    work = a.work or a.generated.parent
    work.mkdir(parents=True, exist_ok=True)
    before, per0 = _evaluate(a.generated, a.reference, a.workers)
    relaxed = work / f"{a.generated.stem}.{a.mlip}_relaxed.extxyz"
    cmd = [sys.executable, "-m", "matgen", "score", "--in", str(a.generated),
           "--out", str(relaxed.with_suffix(".scores.csv")), "--mlip", a.mlip,
           "--device", a.device, "--fmax", str(a.fmax), "--max-steps", str(a.max_steps),
           "--relaxed-out", str(relaxed)]
    relax_s = _run(cmd, ok=(0, 1))  # 1: some frames unreadable (too-close atoms), rest scored
    after, per1 = _evaluate(relaxed, a.reference, a.workers)
    res = {"what": __doc__.splitlines()[0], "generated": str(a.generated),
           "reference": str(a.reference), "score_command": " ".join(cmd[1:]),
           "relax_seconds": relax_s, "before": before, "after": after,
           "per_reference": compare(per0, per1)}
    a.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

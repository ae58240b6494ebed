"""Summarise a sampler sweep (``benchmarks/device/sampler_sweep.sh``) into one JSON.

The sweep leaves ``{task}_{split}_k{value}_s{seed}.json`` (``matgen evaluate`` metrics) in its
folder. Per value this writes: val CSP pooled over seeds (matched rows summed, RMSE weighted by
matched rows), val de novo metrics averaged over seeds (and their spread), and the public-test
CSP / de novo scores and the CSP recall on training rows when present; plus every file's
headline metrics.

    python benchmarks/sweep_summary.py /tmp/order --what "..." --machine "..." \
        --command "..." --rule benchmarks/ablations/type_order_rule.txt \
        --out benchmarks/results/type_order_h200.json
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

NAME = re.compile(r"^(csp|gen)_(val|test|train)_k(.+)_s(\d+)\.json$")
CSP_KEYS = ("match_rate", "rmse", "num_matched", "num_references", "generated_validity",
            "generated_comp_validity", "generated_struct_validity")
GEN_KEYS = ("num_generated", "valid", "comp_valid", "struct_valid", "wdist_density",
            "wdist_num_elements", "uniqueness")


def _headline(task: str, metrics: dict) -> dict:
    return {k: metrics[k] for k in (CSP_KEYS if task == "csp" else GEN_KEYS) if k in metrics}


def _pooled_csp(rows: list[dict]) -> dict:
    matched = sum(r["num_matched"] for r in rows)
    refs = sum(r["num_references"] for r in rows)
    rmse = (sum(r["rmse"] * r["num_matched"] for r in rows if r.get("rmse") is not None)
            / matched) if matched else None
    return {"match_rate": matched / refs if refs else None, "num_matched": matched,
            "num_references": refs, "rmse": rmse, "seeds": len(rows)}


def _mean_gen(rows: list[dict]) -> dict:
    out: dict = {"seeds": len(rows)}
    for k in GEN_KEYS[1:]:
        v = np.array([r[k] for r in rows if r.get(k) is not None], dtype=float)
        if len(v):
            out[k] = float(v.mean())
            out[f"{k}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else None
    return out


def summarise(folder: Path) -> tuple[dict, dict]:
    per_file, groups = {}, defaultdict(list)
    for path in sorted(folder.glob("*.json")):
        m = NAME.match(path.name)
        if not m:
            continue
        task, split, value, seed = m.groups()
        head = _headline(task, json.loads(path.read_text()))
        per_file[path.stem] = head
        groups[(value, task, split)].append((int(seed), head))
    summary: dict = defaultdict(dict)
    for (value, task, split), rows in sorted(groups.items()):
        rows = [r for _, r in sorted(rows, key=lambda x: x[0])]
        if split == "val":
            key = f"val_{task}_" + ("pooled" if task == "csp" else f"mean_{len(rows)}_seeds")
            summary[value][key] = _pooled_csp(rows) if task == "csp" else _mean_gen(rows)
        else:  # test; train: CSP recall on training rows (sampler_sweep.sh TRAIN_REF)
            summary[value][f"{split}_{task}_seed0"] = rows[0]
    return dict(summary), per_file


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    for name in ("what", "date", "machine", "command", "rule", "wall_s"):
        ap.add_argument(f"--{name.replace('_', '-')}", default=None)
    a = ap.parse_args(argv)
    summary, per_file = summarise(a.folder)
    if not per_file:
        raise SystemExit(f"error: {a.folder}: no sweep metrics (csp|gen_val|test_kV_sN.json)")
    doc = {k: getattr(a, k) for k in ("what", "date", "machine", "command", "rule", "wall_s")
           if getattr(a, k) is not None}
    doc.update(summary=summary, per_file=per_file)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    for value, parts in summary.items():
        print(value, json.dumps({k: {kk: (round(vv, 4) if isinstance(vv, float) else vv)
                                     for kk, vv in v.items() if not kk.endswith("_sd")}
                                 for k, v in parts.items()}))


if __name__ == "__main__":
    main()

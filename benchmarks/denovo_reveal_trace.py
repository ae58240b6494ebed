"""When do de novo samples get their stray atoms? Samples de novo crystals with a checkpoint,
records the sampler step at which each atom's type is revealed, and reports, per cell size and
reveal-step window, the share of atoms that end as a "singleton" (the only atom of its element
in the cell). Sampling options as ``matgen sample`` (``--type-order``, ``--type-remask``).

    python benchmarks/denovo_reveal_trace.py --num 320 --seed 5 \
        --out benchmarks/results/denovo_reveal_trace_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from matgen.generate import SampleSpec, plan_sampling, sample_batches

SIZE_BINS = ((1, 4), (5, 8), (9, 14), (15, 20))


def trace(spec: SampleSpec) -> tuple[np.ndarray, int]:
    """``(atoms, 4)`` rows of (cell size, reveal step, singleton 0/1, elements in the cell) and
    the number of sampler steps."""
    plan = plan_sampling(spec.checked(), lambda _m: None)
    state: dict = {}

    def seen(step: int, steps: int, batch) -> None:
        z = batch.atomic_numbers
        if step == 1:
            state["first"] = torch.full_like(z, -1)
        first = state["first"]
        first[(z > 0) & (first < 0)] = step
        state["steps"] = steps

    rows = []
    for item in sample_batches(plan, callback=seen):
        z, lo = item.crystals.atomic_numbers.tolist(), 0
        first = state["first"].tolist()
        for n in item.crystals.num_atoms.tolist():
            types, steps = z[lo:lo + n], first[lo:lo + n]
            lo += n
            count = Counter(types)
            rows += [(n, s, int(count[a] == 1), len(count)) for a, s in zip(types, steps)]
    return np.array(rows), int(state["steps"])


def summarise(rows: np.ndarray, steps: int) -> dict:
    """Singleton share per cell-size bin, overall and per fifth of the reveal steps."""
    edges = np.linspace(0, steps, 6).round().astype(int)
    out = {}
    for lo, hi in SIZE_BINS:
        r = rows[(rows[:, 0] >= lo) & (rows[:, 0] <= hi)]
        if not len(r):
            continue
        windows = {}
        for a, b in zip(edges[:-1] + 1, edges[1:]):
            m = (r[:, 1] >= a) & (r[:, 1] <= b)
            if m.any():
                windows[f"steps {a}-{b}"] = {"atoms": int(m.sum()),
                                             "singleton_share": float(r[m, 2].mean())}
        out[f"{lo}-{hi} atoms"] = {"atoms": len(r), "singleton_share": float(r[:, 2].mean()),
                                   "by_reveal_step": windows}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--num", type=int, default=320)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--type-order", default=None)
    ap.add_argument("--type-remask", type=float, default=None)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    # the denoiser's own type reveals (the shipped default draws atoms composition-first)
    spec = SampleSpec(checkpoint=a.checkpoint, num=a.num, seed=a.seed, device=a.device,
                      batch_size=a.batch_size, type_order=a.type_order,
                      type_remask=a.type_remask, denovo="joint")
    t0 = time.perf_counter()
    rows, steps = trace(spec)
    doc = {"what": __doc__.split("\n\n")[0].replace("\n", " "),
           "options": {k: v for k, v in vars(a).items() if k != "out"},
           "machine": f"{platform.node()} ({torch.get_num_threads()} threads)",
           "seconds": round(time.perf_counter() - t0, 1), "steps": steps,
           "by_cell_size": summarise(rows, steps)}
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    for k, v in doc["by_cell_size"].items():
        print(k, round(v["singleton_share"], 3),
              {w: round(x["singleton_share"], 3) for w, x in v["by_reveal_step"].items()})


if __name__ == "__main__":
    main()

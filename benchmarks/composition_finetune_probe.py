"""How far the campaign's composition fine-tuning moves the shipped composition model, and whether
the move generalises beyond the hits it saw (issue 22's learning generator, composition-first).

A stand-in campaign: the "hits" are mp20_reduced val crystals inside a band-gap window that are on
or near the hull (``--window``, ``--e-hull``), split in two: ``--hits`` of them are fine-tuned on
(with their labels as conditions, plus as many replayed train rows and the hits repeated to fill,
as ``generator.finetune.replay_fill``), the rest are held out. The model is fine-tuned with the
campaign's function (:func:`matgen.training.finetune_composition_model`) at each ``--lr`` for
``--steps`` steps of ``--batch`` and scored by the mean NLL per crystal (nats, dropout off) of: the
fine-tuned hits (conditioned on their labels), the held-out window crystals (conditioned, and
unconditioned: what unconditioned sampling would draw), and all of val unconditioned (what the
model forgets).

    python benchmarks/composition_finetune_probe.py --lr 1e-4 5e-4 --out \\
        benchmarks/results/composition_finetune_probe_cpu.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time

import numpy as np
import torch


def _nll(model, comps, cond) -> float:
    from matgen.models import encode

    model.eval()
    with torch.no_grad():
        return float(model.nll(*encode(comps, model.cfg.num_types),
                               model.normalise(cond)).mean())


def main() -> None:
    from matgen.data import load_dataset
    from matgen.generate import DEFAULT_MODEL_DIR
    from matgen.models import load_composition_model
    from matgen.training import (
        CompositionTrainConfig,
        cell_compositions,
        condition_matrix,
        finetune_composition_model,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--window", type=float, nargs=2, default=(1.0, 3.0), help="band gap, eV")
    ap.add_argument("--e-hull", type=float, default=0.05, help="e_above_hull at most, eV/atom")
    ap.add_argument("--hits", type=int, default=20)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-4, 5e-4])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()

    base = load_composition_model(DEFAULT_MODEL_DIR)
    names = list(base.cfg.conditions)
    val, train = load_dataset("mp20", "val"), load_dataset("mp20", "train")
    comps_va, y_va = cell_compositions(val), condition_matrix(val, names)
    comps_tr, y_tr = cell_compositions(train), condition_matrix(train, names)
    gap = y_va[:, names.index("band_gap")].numpy()
    ehull = y_va[:, names.index("e_above_hull")].numpy()
    inside = np.flatnonzero((gap >= args.window[0]) & (gap <= args.window[1])
                            & (ehull <= args.e_hull))
    rng = np.random.default_rng(args.seed)
    rng.shuffle(inside)
    hit, held = inside[: args.hits], inside[args.hits :]
    # the fine-tuning set as replay_fill builds it: steps x batch rows, half hits (repeated)
    total = args.steps * args.batch
    hit_rows = [int(hit[i % len(hit)]) for i in range(total // 2)]
    rep = rng.choice(len(comps_tr), size=total - len(hit_rows), replace=False)
    ft_comps = [comps_va[i] for i in hit_rows] + [comps_tr[i] for i in rep]
    ft_cond = torch.cat([y_va[hit_rows], y_tr[rep]])
    none = torch.full_like(y_va, math.nan)
    sets = {"hits_conditioned": ([comps_va[i] for i in hit], y_va[hit]),
            "held_out_window_conditioned": ([comps_va[i] for i in held], y_va[held]),
            "held_out_window_unconditioned": ([comps_va[i] for i in held], none[held]),
            "val_unconditioned": (comps_va, none)}
    out = {"what": __doc__.split("\n\n")[0], "settings": vars(args),
           "window_crystals_in_val": len(inside), "held_out": len(held),
           "before": {k: round(_nll(base, *v), 4) for k, v in sets.items()}, "after": {}}
    for lr in args.lr:
        t0 = time.perf_counter()
        cfg = CompositionTrainConfig(lr=lr, batch_size=args.batch, seed=args.seed)
        model, _ = finetune_composition_model(copy.deepcopy(base), ft_comps, ft_cond,
                                              args.steps, cfg)
        out["after"][str(lr)] = {k: round(_nll(model, *v), 4) for k, v in sets.items()}
        out["after"][str(lr)]["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Is the unconditional de novo mode the weak one? Samples de novo crystals of a checkpoint
twice with the same seed: unconditioned (every condition NaN: the mode ``matgen sample`` uses by
default, which training shows the network on only ``drop_prob ** k`` of its crystals when each
of k conditions is dropped independently) and conditioned on the property values of randomly
drawn training rows (all conditions at once, jointly as the data has them: a sample of the
conditionals mixed over the data's conditions is again a sample of the data distribution if
the network is right). Writes both as extxyz next to ``--out`` for ``matgen evaluate --task
gen`` and ``benchmarks/denovo_composition_stats.py``.

    python benchmarks/denovo_condition_source.py --num 400 --seed 7 \
        --train $MATGEN_DATA_DIR/mp20_reduced/train.csv --out /tmp/cond_source
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ase import Atoms

from matgen.crystal import write_extxyz
from matgen.generate import SampleSpec, plan_sampling, sample_batches


def draw_rows(train: Path, names: list[str], num: int, seed: int) -> dict[str, torch.Tensor]:
    """``{name: (num,)}`` property values of ``num`` training rows drawn with replacement
    (rows with any of ``names`` missing are left out)."""
    df = pd.read_csv(train, usecols=names).dropna()
    idx = np.random.default_rng(seed).integers(0, len(df), num)
    return {n: torch.tensor(df[n].to_numpy()[idx], dtype=torch.float64) for n in names}


def sample(spec: SampleSpec, values=None) -> list[Atoms]:
    """Crystals of ``spec`` (``CrystalBatch.to_atoms``: ``material_id`` in ``info``). ``values``
    ``{name: (R,)}``, or a function of the plan giving them, replaces the condition values
    drawn for the requests (the targets only name the conditions)."""
    plan = plan_sampling(spec.checked(), lambda _m: None)
    if values is not None:
        plan = dataclasses.replace(plan, values=values(plan) if callable(values) else values)
    return [a for item in sample_batches(plan) for a in item.crystals.to_atoms()]


def sample_arms(out: Path, arms) -> dict:
    """Each ``(tag, spec, values)`` arm sampled (:func:`sample`) into ``out/<tag>.extxyz``;
    ``{tag: {frames, seconds}}``."""
    doc = {}
    for tag, spec, values in arms:
        t0 = time.perf_counter()
        frames = sample(spec, values)
        write_extxyz(out / f"{tag}.extxyz", frames)
        doc[tag] = {"frames": len(frames), "seconds": round(time.perf_counter() - t0, 1)}
        print(tag, doc[tag])
    return doc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--num", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="folder for the two extxyz files")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    # joint sampling, the mode this diagnostic is about (the shipped default draws atoms
    # composition-first, from the condition values before they could be replaced)
    base = SampleSpec(checkpoint=a.checkpoint, num=a.num, seed=a.seed, device=a.device,
                      batch_size=a.batch_size, denovo="joint")
    plan = plan_sampling(base.checked(), lambda _m: None)
    names = [s["name"] if isinstance(s, dict) else s
             for s in (plan.meta.get("conditions") or {})]
    if not names:
        raise SystemExit("the checkpoint has no conditions")
    values = draw_rows(a.train, names, a.num, a.seed)
    cond_spec = dataclasses.replace(base, conditions=[f"{n}=0" for n in names])
    doc = {"checkpoint": plan.checkpoint_id, "conditions": names, "num": a.num, "seed": a.seed}
    doc |= sample_arms(a.out, [("unconditioned", base, None),
                               ("train_conditions", cond_spec, values)])
    (a.out / "run.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()

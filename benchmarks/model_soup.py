"""A uniform "model soup" (Wortsman et al., 2022): the element-wise mean of the weights of
checkpoints of one architecture fine-tuned from a common parent, written as a matgen checkpoint.

The first checkpoint gives the sampling and training metadata (diffusion settings such as the de
novo type temperature, dataset statistics, conditions); ``metadata.soup`` records the members
(path and checkpoint id) and ``metadata.init`` points at the first. Tensors are averaged in
float32 and stored in the first member's storage dtype. Used for round 17 (the mean of c14 and
round 16's two continuations of it):

    python benchmarks/model_soup.py matgen/assets/models/default RUN_A RUN_B --out soup/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from matgen.generate import weights_id
from matgen.models import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_json,
    save_checkpoint,
)


def average(paths: list[Path]):
    """(model holding the mean weights, metadata of the first checkpoint as stored in JSON)."""
    models = [load_checkpoint(p)[0] for p in paths]
    # dropout changes training, not the weights' layout or evaluation: members may differ in it
    cfgs = {json.dumps(m.cfg.model_dump(mode="json", exclude={"dropout"}), sort_keys=True)
            for m in models}
    if len(cfgs) > 1:
        raise CheckpointError("the checkpoints build different denoisers: a soup needs one "
                              "architecture (compare their model.json 'denoiser' blocks)")
    states = [m.state_dict() for m in models]
    mean = {}
    for key, ref in states[0].items():
        if ref.is_floating_point():
            mean[key] = (sum(s[key].float() for s in states) / len(states)).to(ref.dtype)
        else:
            mean[key] = ref
    models[0].load_state_dict(mean)
    return models[0], read_checkpoint_json(paths[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint folders (>= 2)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the soup checkpoint")
    a = ap.parse_args(argv)
    if len(a.checkpoints) < 2:
        ap.error("a soup needs at least two checkpoints")
    try:
        model, raw = average(a.checkpoints)
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    meta = dict(raw.get("metadata", {}))
    members = [{"path": str(p), "checkpoint_id": weights_id(p)} for p in a.checkpoints]
    meta["soup"] = {"members": members, "how": "uniform mean of the float32 weights"}
    meta["init"] = {**members[0], "step": meta.get("step")}
    dtype = raw.get("storage_dtype")
    save_checkpoint(a.out, model, meta, getattr(torch, dtype) if dtype else None)
    print(f"soup of {len(members)} -> {a.out} (checkpoint {weights_id(a.out)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Composition-first de novo generation: draw each cell's atoms from the checkpoint's composition
model (:mod:`matgen.models._composition`), then predict the structure of those atoms with the
denoiser's CSP mode.

A checkpoint folder may hold ``composition.safetensors`` + ``composition.json`` beside its
``model.safetensors``; ``composition.json``'s ``sampling`` entry gives the defaults:
``{"denovo": "composition" | "joint", "temperature": T}``. Without those files de novo
generation is joint (the denoiser draws the atom types along with the structure).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from matgen.generate._requests import Request, SampleInputError, _compact

DENOVO_MODES = ("joint", "composition")


def composition_defaults(ckpt_dir: Path) -> dict:
    """``composition.json``'s ``sampling`` entry (``{}`` without a composition model)."""
    from matgen.models import COMPOSITION_META, has_composition_model

    if not has_composition_model(ckpt_dir):
        return {}
    try:
        return dict(json.loads((ckpt_dir / COMPOSITION_META).read_text()).get("sampling") or {})
    except (OSError, ValueError, AttributeError):
        return {}  # load_composition_model reports an unreadable file when it is used


def resolve_denovo(spec, ckpt_dir: Path) -> tuple[str, float]:
    """``(mode, composition temperature)`` of a checked spec against its checkpoint.

    Raises:
        SampleInputError: ``--denovo composition`` for a checkpoint without a composition
            model.
    """
    from matgen.models import has_composition_model

    defaults = composition_defaults(ckpt_dir)
    if spec.task != "gen":
        return "joint", 1.0
    mode = spec.denovo or defaults.get("denovo", "joint")
    if mode == "composition" and not has_composition_model(ckpt_dir):
        raise SampleInputError(f"--denovo composition: {ckpt_dir} has no composition model "
                               "(composition.safetensors; make one with matgen "
                               "train-composition)")
    temperature = spec.composition_temperature
    if mode == "joint" and temperature is not None:
        raise SampleInputError("--composition-temperature applies to composition-first de novo "
                               "(--denovo composition)")
    if temperature is None:
        temperature = float(defaults.get("temperature", 1.0))
    return mode, float(temperature)


def composition_requests(spec, ckpt_dir: Path, values: dict[str, torch.Tensor],
                         temperature: float, generator: torch.Generator) -> list[Request]:
    """``spec.num`` de novo requests whose atoms the composition model draws, conditioned on
    the drawn target ``values`` (raw units) and restricted to ``spec.chemsys``."""
    from matgen.models import CompositionFileError, load_composition_model

    try:
        model = load_composition_model(ckpt_dir)
    except CompositionFileError as e:
        raise SampleInputError(str(e)) from None
    names = model.cfg.conditions
    cond = torch.full((spec.num, max(len(names), 1)), math.nan, dtype=torch.float64)
    for j, name in enumerate(names):
        if name in values:
            cond[:, j] = values[name].double()
    allowed = None
    if spec.chemsys:
        from matgen.guidance import chemsys_type_mask

        allowed = chemsys_type_mask(spec.chemsys, model.cfg.num_types)
    comps = model.sample(cond[:, : len(names)], temperature=temperature,
                         guidance=spec.guidance, allowed=allowed, generator=generator)
    out = []
    for comp in comps:
        zs = [z for z in sorted(comp) for _ in range(comp[z])]
        out.append(Request(tuple(zs), len(zs), _compact(zs)))
    return out

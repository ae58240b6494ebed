"""What to sample: the options of :func:`matgen.generate.generate` and :func:`matgen.sample`
in one place, with their defaults and the checks that need no checkpoint."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from matgen.generate._requests import SampleInputError, check_formula
from matgen.generate._targets import ConditionTarget, parse_condition

SamplerName = Literal["pc", "fast", "consistency", "auto"]

#: Steps of each sampler when ``steps`` is not given.
DEFAULT_STEPS = {"pc": 1000, "fast": 50, "consistency": 2}

def default_steps(sampler: str, task: str, diffusion_cfg=None) -> int:
    """Steps of ``sampler`` for ``task`` (``gen`` / ``csp``) when none are given: the
    checkpoint's ``diffusion.csp_fast_steps`` for fast CSP where it sets one (c14, the default
    until 2026-12-07: 100, chosen on its fresh val seeds: RMSE 0.0947 -> 0.0844, matches 1,012 ->
    1,003 of 2,000, ``benchmarks/ablations/csp_steps_rule.txt``; the shipped l32: 200, pooled val
    RMSE 0.0752 -> 0.0699, ``benchmarks/ablations/round33_rule.txt``), else
    :data:`DEFAULT_STEPS`."""
    own = getattr(diffusion_cfg, "csp_fast_steps", None)
    if sampler == "fast" and task == "csp" and own:
        return int(own)
    return DEFAULT_STEPS[sampler]


@dataclass(frozen=True)
class SampleSpec:
    """The options of one sampling call.

    Attributes:
        checkpoint: a checkpoint folder, its ``model.safetensors``, or a run dir (its newest
            checkpoint); ``None``: the shipped default model.
        num: de novo: structures in all; CSP: structures per composition / CSV row.
        task: ``gen`` (de novo) or ``csp``; compositions imply ``csp``.
        compositions: formulas for CSP.
        compositions_from: CSV with ``material_id`` and ``cif`` or ``formula`` (CSP).
        formula_units: how a formula becomes a cell (see
            :func:`matgen.generate.expand_formula`).
        chemsys: ``A-B-C``: de novo atoms are restricted to these elements.
        conditions: ``KEY=VALUE``, ``KEY=LO:HI``, ``KEY=:HI``, ``KEY=LO:`` targets (or
            :class:`ConditionTarget`); a range is sampled uniformly per structure (the drawn
            value is recorded).
        guidance: classifier-free guidance scale (1: plain conditional model).
        steps: sampler steps (default 1000 for ``pc``, 50 for ``fast`` (for CSP the
            checkpoint's ``diffusion.csp_fast_steps`` where set; 200 for the shipped model),
            2 for ``consistency``).
        sampler: ``pc`` predictor-corrector, ``fast`` the few-step deterministic sampler,
            ``consistency`` the 1-4 step sampler of a consistency-distilled checkpoint,
            ``auto`` (the default, as ``matgen sample``): consistency for a distilled
            checkpoint, fast for a flow-matching one, fast on CPU when ``steps`` is not
            given, pc otherwise.
        seed: base seed (batch ``k`` is seeded with ``seed * 1_000_003 + k``).
        batch_size: crystals per denoiser batch.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: the denoiser's arithmetic: ``bf16`` (autocast, as in training),
            ``fp32``, or ``auto`` (bf16 on CUDA, fp32 on CPU). The sampler's own updates
            always stay in float32.
        flow_slope: a flow-matching checkpoint's coordinate anti-annealing slope for this run
            (``None``: the checkpoint's ``diffusion.flow_slope``); refused for score models.
        clash_scale: a flow-matching checkpoint's clash repulsion for this run: atoms closer
            than this fraction of their covalent bond length are pushed apart after each step
            (``None``: the checkpoint's ``diffusion.clash_scale``; 0 = off); refused for score
            models.
        clash_floor: the same push for any pair closer than this many Å (``None``: the
            checkpoint's ``diffusion.clash_floor``; 0 = none); refused for score models.
        type_temperature: de novo: revealed atom types are drawn from ``softmax(logits / T)``
            (``None``: the checkpoint's ``diffusion.type_temperature``, 1 if it has none).
        type_order: de novo: which masked atoms each step reveals, ``random`` or the most
            ``confidence``-ly predicted (``None``: the checkpoint's ``diffusion.type_order``).
        type_remask: de novo: rate per unit time at which revealed atoms are masked again and
            redrawn (``None``: the checkpoint's ``diffusion.type_remask``; 0 = never).
        denovo: de novo: ``joint`` (the denoiser draws atom types with the structure) or
            ``composition`` (the checkpoint's composition model draws each cell's atoms, then
            the denoiser predicts their structure as in CSP); ``None``: the checkpoint's default
            (``composition.json``), joint without a composition model.
        composition_temperature: ``denovo="composition"``: the composition model's logits
            are divided by it (``None``: the checkpoint's default, else 1).
        consensus: CSP: each of the ``num`` answers per composition is chosen from this many
            samples of it, the one the most others match (see
            :mod:`matgen.generate._consensus`); ``None``: every sample is an answer. Costs
            ``consensus`` times the sampling, plus the structure matching on the CPU (about
            0.1 s per answer at 10). ``batch_size`` is rounded to a multiple of it, so that a
            composition's samples share a batch.
        select_by: with ``consensus``, how the answer is chosen: ``votes`` (the sample the most
            others match) or an MLIP's name (``chgnet``, ``sevennet``, ``sevennet-0``): the
            usable sample with the lowest single-point energy per atom, computed by the
            ``energies`` function the caller passes (``matgen sample`` and ``matgen.sample``
            build it with :func:`matgen.surrogates.energy_function`).
    """

    checkpoint: str | Path | None = None
    num: int = 1
    task: Literal["gen", "csp"] = "gen"
    compositions: Sequence[str] = ()
    compositions_from: str | Path | None = None
    formula_units: int | Literal["as-written", "auto"] = "as-written"
    chemsys: str | None = None
    conditions: Sequence[str | ConditionTarget] = ()
    guidance: float = 1.0
    steps: int | None = None
    sampler: SamplerName = "auto"
    seed: int = 0
    batch_size: int = 64
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    flow_slope: float | None = None
    clash_scale: float | None = None
    clash_floor: float | None = None
    type_temperature: float | None = None
    type_order: str | None = None
    type_remask: float | None = None
    denovo: str | None = None
    composition_temperature: float | None = None
    consensus: int | None = None
    select_by: str = "votes"

    def checked(self) -> SampleSpec:
        """This spec with the task compositions imply, after the checks that need no
        checkpoint.

        Raises:
            SampleInputError: one line, for the user.
        """
        if self.num < 1:
            raise SampleInputError("--num must be >= 1")
        if self.batch_size < 1:
            raise SampleInputError("--batch-size must be >= 1")
        if self.flow_slope is not None and not (
                self.flow_slope >= 0 and math.isfinite(self.flow_slope)):
            raise SampleInputError(f"--flow-slope must be a number >= 0 (got {self.flow_slope})")
        if self.clash_scale is not None and not 0 <= self.clash_scale <= 1:
            raise SampleInputError(
                f"--clash-scale must be a number in [0, 1] (got {self.clash_scale})")
        if self.clash_floor is not None and not 0 <= self.clash_floor <= 2:
            raise SampleInputError(
                f"--clash-floor must be a distance in [0, 2] Å (got {self.clash_floor})")
        if self.type_temperature is not None and not (
                self.type_temperature > 0 and math.isfinite(self.type_temperature)):
            raise SampleInputError(
                f"--type-temperature must be a number > 0 (got {self.type_temperature})")
        if self.type_order not in (None, "random", "confidence"):
            raise SampleInputError(
                f"--type-order must be random or confidence (got {self.type_order!r})")
        if self.type_remask is not None and not (
                self.type_remask >= 0 and math.isfinite(self.type_remask)):
            raise SampleInputError(
                f"--type-remask must be a number >= 0 (got {self.type_remask})")
        if self.denovo not in (None, "joint", "composition"):
            raise SampleInputError(
                f"--denovo must be joint or composition (got {self.denovo!r})")
        if self.composition_temperature is not None and not (
                self.composition_temperature > 0 and math.isfinite(self.composition_temperature)):
            raise SampleInputError("--composition-temperature must be a number > 0 "
                                   f"(got {self.composition_temperature})")
        if not (self.guidance >= 0 and math.isfinite(self.guidance)):
            # 0 samples the unconditional model, 1 the plain conditional one; below 0 would steer
            # away from the target, which no user asks for by that sign
            raise SampleInputError(f"--guidance must be a finite number >= 0 (got {self.guidance})")
        if self.steps is not None and self.steps < 1:
            raise SampleInputError(f"--steps must be >= 1 (got {self.steps})")
        device = str(self.device)
        if device not in ("auto", "cpu") and not device.startswith("cuda"):
            raise SampleInputError(f"--device must be auto, cpu or cuda (got {device!r})")
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise SampleInputError(f"--device {device}: CUDA is not available on this "
                                       "machine (use --device cpu or auto)")
        if self.chemsys is not None:
            from matgen.guidance import parse_chemsys

            try:
                parse_chemsys(self.chemsys)
            except ValueError as e:
                raise SampleInputError(f"--chemsys {self.chemsys!r}: {e}") from None
        for formula in self.compositions:  # before any checkpoint is loaded
            check_formula(formula, self.formula_units)
        csv_given = self.compositions_from is not None
        task = "csp" if (self.compositions or csv_given) else self.task
        if task == "csp" and not self.compositions and not csv_given:
            raise SampleInputError("--task csp needs --composition or --compositions-from")
        if self.compositions and csv_given:
            raise SampleInputError("use --composition or --compositions-from, not both")
        if task == "csp" and (self.denovo is not None or self.composition_temperature is not None):
            raise SampleInputError("--denovo and --composition-temperature apply to de novo "
                                   "generation (CSP is given its atoms)")
        if self.consensus is not None:
            if task != "csp":
                raise SampleInputError("--consensus applies to CSP (--composition or "
                                       "--compositions-from): de novo samples have no common answer")
            if self.consensus < 2:
                raise SampleInputError(f"--consensus must be >= 2 (got {self.consensus})")
        elif self.select_by != "votes":
            raise SampleInputError(f"--select-by {self.select_by} chooses among the samples of "
                                   "--consensus K; give --consensus")
        return replace(self, task=task)

    def sampling_diffusion(self, diffusion):
        """The checkpoint's ``diffusion`` with this run's flow anti-annealing slope, clash
        scale and type temperature, order and remasking (each ``None``: the checkpoint's)."""
        update = {}
        for flag, name, value in (("--flow-slope", "flow_slope", self.flow_slope),
                                  ("--clash-scale", "clash_scale", self.clash_scale),
                                  ("--clash-floor", "clash_floor", self.clash_floor)):
            if value is None:
                continue
            if not diffusion.is_flow:
                raise SampleInputError(f"{flag} needs a flow-matching checkpoint "
                                       "(diffusion.objective: flow); this one is score-based")
            update[name] = float(value)
        if self.type_temperature is not None:
            update["type_temperature"] = float(self.type_temperature)
        if self.type_order is not None:
            update["type_order"] = self.type_order
        if self.type_remask is not None:
            update["type_remask"] = float(self.type_remask)
        if not update:
            return diffusion
        from matgen.diffusion import build_diffusion

        return build_diffusion(diffusion.cfg.model_copy(update=update), diffusion.stats)

    def targets(self) -> list[ConditionTarget]:
        """The parsed conditions (a name given twice is refused)."""
        specs = [parse_condition(c) if isinstance(c, str) else c for c in self.conditions]
        if len({s.name for s in specs}) != len(specs):
            raise SampleInputError("a condition is given twice")
        return specs

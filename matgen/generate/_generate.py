"""Sampling from a checkpoint: plan (checkpoint, sampler, requests, targets), the batch loop,
and its two ends, an extxyz file (:func:`generate`, ``matgen sample``) or pymatgen structures
in memory (:func:`sample_structures`, ``matgen.sample``).

Requests are expanded to one entry per output structure, cut into batches of ``batch_size``
crystals and generated with a sampler of :mod:`matgen.diffusion`. When they span more than one
batch (and ``batch_size > 1``), they are batched in order of atom count (a stable sort: ties
keep input order; see :func:`batch_order`): the denoiser pads a batch to its largest crystal,
so like sizes together waste less work (1.48x structures/s for the shipped model on an H200,
MP-20 test compositions). A plan that fits in one batch runs in input order, as before.

Output order: ``sample_id`` (``<checkpoint>-s<seed>-<i>``) is always ``i``, the request's
index in input order, and each frame carries its ``material_id`` / ``composition`` / targets.
:func:`sample_structures` returns structures in request order (restored in memory). The file
:func:`generate` writes holds the frames in batch order (by size), because each batch is
appended as it finishes: that keeps ``OUT.partial`` resumable batch by batch without holding
or rewriting the whole file; read frames by ``sample_id`` / ``material_id``, not position.

Reproducibility: batch ``k`` uses a generator seeded with ``seed * 1_000_003 + k`` on the
sampling device, so the same checkpoint, requests, seed, batch size and device give the same
structures, whichever end they go to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from matgen.crystal import MAX_Z, CrystalBatch, too_close
from matgen.diffusion import SAMPLER_FAILED as FAILED
from matgen.diffusion import call_denoiser
from matgen.generate._checkpoints import load_for_sampling, weights_id
from matgen.generate._compositions import composition_requests, resolve_denovo
from matgen.generate._frames import frame_info, set_options
from matgen.generate._output import open_writer, output_format
from matgen.generate._requests import (
    Request,
    SampleInputError,
    requests_de_novo,
    requests_from_csv,
    requests_from_formulas,
)
from matgen.generate._spec import SampleSpec, default_steps
from matgen.generate._targets import ConditionTarget

Log = Callable[[str], None]
#: A sampler's ``callback(step, steps, state)`` (see :func:`matgen.diffusion.sample`).
Callback = Callable[[int, int, CrystalBatch], None]


@dataclass
class SampleResult:
    """What :func:`generate` wrote.

    Attributes:
        path: the extxyz file.
        num_structures: frames in the file (those of a resumed ``.partial`` included).
        checkpoint_id: short sha256 of the weights.
        elapsed_s: wall-clock seconds of this call's generation (loading excluded).
        structures_per_s: structures this call generated per second.
        skipped: one-line reasons for input rows that could not be used.
        too_close: structures of this call with two atoms closer than the validator's
            ``ValidationOptions.min_distance`` (0.5 Å; written as generated, ``matgen score``,
            evaluation and campaigns reject them).
    """

    path: Path
    num_structures: int
    checkpoint_id: str
    elapsed_s: float
    structures_per_s: float
    skipped: list[str] = field(default_factory=list)
    too_close: int = 0


def count_too_close(crystals: CrystalBatch, limit: float | None = None) -> int:
    """How many crystals of a (CPU) batch :func:`matgen.crystal.too_close` flags."""
    return sum(too_close(crystals, limit))


@dataclass
class SamplePlan:
    """A sampling run resolved against its checkpoint (what the batch loop needs).

    Attributes:
        spec: the checked options (``task`` as compositions imply it).
        model, diffusion, meta: the checkpoint's denoiser, diffusion and metadata.
        checkpoint_id: short sha256 of the weights.
        device: where the denoiser runs.
        sampler, steps: the sampler chosen (``auto`` resolved) and its steps.
        targets: the parsed conditions; ``values`` their drawn values ``{name: (R,)}``.
        type_mask: allowed element classes (``chemsys``), or None.
        requests: one per output structure; ``skipped`` the unusable input rows.
        energies: the function ``spec.select_by`` names (see :class:`SampleSpec`).
    """

    spec: SampleSpec
    model: Any
    diffusion: Any
    meta: dict
    checkpoint_id: str
    device: torch.device
    sampler: str
    steps: int
    targets: list[ConditionTarget]
    values: dict[str, torch.Tensor]
    type_mask: torch.Tensor | None
    requests: list[Request]
    skipped: list[str]
    #: ``select_by`` an MLIP: structures -> single-point energies per atom (NaN: failed)
    energies: Callable[[list], Sequence[float]] | None = None
    #: de novo: ``joint`` or ``composition`` (see :mod:`matgen.generate._compositions`)
    denovo: str = "joint"
    composition_temperature: float = 1.0


@dataclass
class SampledBatch:
    """One finished batch: its requests, their offset in the plan, the crystals (on CPU; ids:
    the source row's ``material_id`` or the ``sample_id``) and the per-frame info."""

    requests: list[Request]
    offset: int
    crystals: CrystalBatch
    info: dict[str, list]
    failed: int = 0
    #: each frame's request index in input order (``offset`` counts batch-order positions)
    index: list[int] = field(default_factory=list)

    @property
    def keep_id(self) -> list[bool]:
        """Which frames carry a source row's ``material_id``."""
        return [bool(r.material_id) for r in self.requests]


# ---------------------------------------------------------------------- planning
def resolve_device(device: str) -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def choose_sampler(spec: SampleSpec, distilled: bool, device: torch.device, say: Log,
                   flow: bool = False) -> str:
    """The sampler to run: ``auto`` resolved, a consistency sampler only for a distilled
    checkpoint (and a warning for another sampler on one).

    ``auto``: consistency for a distilled checkpoint; fast for a flow-matching one (its ODE
    matches as well at 50-100 Euler steps as at 500-1,000: ``benchmarks/results/
    ablation_round3_h200.json``, ``default_model_h100_eval_slope30.json``);
    fast on CPU when no step count is given; else the 1000-step predictor-corrector."""
    sampler = spec.sampler
    if sampler == "auto":
        if distilled:
            sampler = "consistency"
        elif flow:
            sampler = "fast"
        elif device.type == "cpu" and spec.steps is None:
            # the 1000-step predictor-corrector takes hours for 100 crystals on a laptop CPU
            sampler = "fast"
            say("note: on CPU the default sampler is fast (50 ODE steps; for CSP the model's own "
                "count where it sets one); pass "
                "--sampler pc for the 1000-step predictor-corrector (better, ~40x slower)")
        else:
            sampler = "pc"
    if sampler == "consistency" and not distilled:
        raise SampleInputError(
            "--sampler consistency needs a consistency-distilled checkpoint (made by "
            "`matgen train` with a `distill` section, e.g. configs/train/distill_mp20.yaml)"
        )
    if distilled and sampler != "consistency":
        say("warning: this checkpoint is consistency-distilled; its outputs are clean-crystal "
            "read-outs, not scores: use --sampler consistency")
    return sampler


def _check_targets(targets: list[ConditionTarget], model) -> None:
    cfg = getattr(model, "cfg", None)
    known = [c.name for c in getattr(cfg, "conditions", [])]
    for s in targets:
        if s.name not in known:
            raise SampleInputError(
                f"condition {s.name!r}: the checkpoint was trained on {known or 'no conditions'}"
            )


def _task_notes(task: str, meta: dict, say: Log) -> None:
    trained_task = meta.get("task")
    if task == "gen" and trained_task == "csp":
        say("warning: this checkpoint was trained for CSP only; de novo atom types are untrained")
    if task == "csp" and trained_task == "gen":
        say("note: this checkpoint was trained de novo only; CSP uses its coordinate/lattice heads")


def _chemsys_mask(spec: SampleSpec, model, device: torch.device) -> torch.Tensor | None:
    if not spec.chemsys:
        return None
    from matgen.guidance import chemsys_type_mask

    if spec.task == "csp":
        raise SampleInputError("--chemsys applies to de novo generation (CSP fixes the atoms)")
    return chemsys_type_mask(spec.chemsys, getattr(model.cfg, "num_types", MAX_Z)).to(device)


def build_requests(
    spec: SampleSpec, meta: dict, generator: torch.Generator
) -> tuple[list[Request], list[str]]:
    """``(requests, skipped)`` for a checked spec: CSP from a CSV or formulas, else de novo
    (atom counts drawn from the checkpoint's training histogram)."""
    if spec.task != "csp":
        return requests_de_novo(spec.num, meta, generator), []
    if spec.compositions_from is not None:
        return requests_from_csv(spec.compositions_from, spec.num, spec.formula_units, meta,
                                 generator)
    return requests_from_formulas(spec.compositions, spec.num, spec.formula_units, meta,
                                  generator), []


def plan_sampling(spec: SampleSpec, say: Log,
                  energies: Callable[[list], Sequence[float]] | None = None) -> SamplePlan:
    """Check ``spec``, load its checkpoint, choose the sampler, build the requests and draw the
    condition targets (requests first, then targets, from one generator seeded ``seed``).
    ``energies``: the MLIP energy function when ``spec.select_by`` names one.

    Raises:
        SampleInputError: bad options for this checkpoint (one line).
    """
    spec = spec.checked()
    if spec.select_by != "votes" and energies is None:
        raise SampleInputError(f"--select-by {spec.select_by}: no energy function was given "
                               "(matgen sample and matgen.sample build it)")
    targets = spec.targets()
    device = resolve_device(spec.device)
    model, diffusion, meta, ckpt = load_for_sampling(spec.checkpoint, device)
    diffusion = spec.sampling_diffusion(diffusion)
    ckpt_id = weights_id(ckpt)
    _check_targets(targets, model)
    sampler = choose_sampler(spec, bool(meta.get("distill")), device, say,
                             flow=bool(getattr(diffusion, "is_flow", False)))
    denovo, comp_t = resolve_denovo(spec, ckpt)
    # composition-first de novo runs the denoiser's CSP mode on the drawn atoms
    _task_notes("csp" if denovo == "composition" else spec.task, meta, say)
    type_mask = _chemsys_mask(spec, model, device)
    k = spec.consensus or 1
    if k > 1:  # a composition's K candidates share a batch (pick_answers)
        spec = replace(spec, batch_size=k * max(1, round(spec.batch_size / k)))
    g_req = torch.Generator().manual_seed(spec.seed)
    stats = meta.get("conditions") or {}

    def draw(n: int) -> dict[str, torch.Tensor]:
        return {s.name: s.draw(n, stats.get(s.name, {"mean": 0.0, "std": 1.0}), g_req)
                for s in targets}

    if denovo == "composition":  # targets first: the composition model reads them
        values = draw(spec.num)
        reqs, skipped = composition_requests(spec, ckpt, values, comp_t, g_req), []
    else:
        reqs, skipped = build_requests(spec, meta, g_req)
    # an answer's K candidates share its request (and so its cell where formula units are drawn)
    reqs = [r for r in reqs for _ in range(k)]
    for line in skipped:
        say(line)
    if not reqs:
        raise SampleInputError("nothing to generate (no usable compositions)")
    if denovo != "composition":
        values = draw(len(reqs))
    steps = spec.steps if spec.steps is not None else default_steps(
        sampler, spec.task, getattr(diffusion, "cfg", None))
    return SamplePlan(spec, model, diffusion, meta, ckpt_id, device, sampler, steps, targets,
                      values, type_mask, reqs, skipped,
                      energies if spec.select_by != "votes" else None, denovo, comp_t)


# ---------------------------------------------------------------------- the batch loop
class _Autocast(torch.nn.Module):
    """The denoiser evaluated under bf16 autocast; its outputs come back in float32, so the
    sampler's updates (and its parameters' dtype, read by the samplers) stay float32."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch, t, cond=None, prev=None):
        with torch.autocast(batch.frac_coords.device.type, dtype=torch.bfloat16):
            out = call_denoiser(self.model, batch, t, cond, prev)
        return type(out)(coord=out.coord.float(), lattice=out.lattice.float(),
                         type_logits=out.type_logits.float())


def sampling_denoiser(model: torch.nn.Module, precision: str, device: torch.device):
    """``model`` as the samplers should call it for ``precision`` (see :class:`SampleSpec`)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return _Autocast(model)
    return model


def _sampler_fn(name: str):
    from matgen.diffusion import sample, sample_consistency, sample_fast

    return {"pc": sample, "fast": sample_fast, "consistency": sample_consistency}[name]


def _sample_batch(plan: SamplePlan, k: int, lo: int, chunk: list[Request],
                  callback: Callback | None = None) -> CrystalBatch:
    """Batch ``k`` (requests ``lo ..``) through the sampler, on CPU (``callback`` after each
    sampler step, see :func:`sample_batches`)."""
    dev, spec = plan.device, plan.spec
    na = torch.tensor([r.num_atoms for r in chunk], dtype=torch.long, device=dev)
    zs = None
    if chunk[0].atomic_numbers is not None:  # CSP, or composition-first de novo
        zs = torch.tensor([z for r in chunk for z in r.atomic_numbers], device=dev)
    cond = None
    if plan.values:
        cond = {n: v[lo : lo + len(chunk)].to(dev, torch.float32) for n, v in plan.values.items()}
    gen = torch.Generator(device=dev).manual_seed(spec.seed * 1_000_003 + k)
    kwargs: dict[str, Any] = {}
    if plan.type_mask is not None and zs is None:
        kwargs["type_mask"] = plan.type_mask
    if callback is not None:
        kwargs["callback"] = callback
    with torch.no_grad():
        net = sampling_denoiser(plan.model, spec.precision, dev)
        res = _sampler_fn(plan.sampler)(net, plan.diffusion, na, zs, steps=plan.steps,
                                        cond=cond, guidance=spec.guidance, generator=gen,
                                        **kwargs)
    return res.to("cpu")


def num_batches(plan: SamplePlan) -> int:
    """Batches the plan's requests are cut into (``batch_size`` crystals each, the last one
    smaller)."""
    return math.ceil(len(plan.requests) / plan.spec.batch_size)


def batch_order(plan: SamplePlan) -> list[int]:
    """The input indices of the plan's requests in the order they are batched: by atom count
    (stable, ties in input order) when they span more than one batch of ``batch_size > 1``,
    else input order (one batch, or batches of one crystal, gain nothing from sorting)."""
    n, size = len(plan.requests), plan.spec.batch_size
    if n <= size or size <= 1:
        return list(range(n))
    return sorted(range(n), key=lambda i: plan.requests[i].num_atoms)


def _in_order(plan: SamplePlan, order: list[int]) -> SamplePlan:
    """``plan`` with its requests and drawn targets permuted to ``order``."""
    if order == list(range(len(order))):
        return plan
    idx = torch.tensor(order, dtype=torch.long)
    return replace(plan, requests=[plan.requests[i] for i in order],
                   values={k: v[idx] for k, v in plan.values.items()})


def sample_batches(plan: SamplePlan, start: int = 0,
                   callback: Callback | None = None) -> Iterator[SampledBatch]:
    """Generate the plan's requests batch by batch, from batch ``start`` on (the earlier ones
    are finished: batch ``k`` is the same whatever ran before it).

    ``callback(step, steps, state)`` is the samplers' (:mod:`matgen.diffusion`): called after
    each of a batch's ``plan.steps`` sampler steps with the batch's current state
    (``(batch_size,)`` crystals), e.g. to show per-step progress.

    Batches follow :func:`batch_order` (by atom count for a multi-batch plan); each
    :class:`SampledBatch` names its frames' input-order indices in ``index``."""
    size = plan.spec.batch_size
    order = batch_order(plan)
    ordered = _in_order(plan, order)
    for k, lo in enumerate(range(0, len(plan.requests), size)):
        if k < start:
            continue
        chunk = ordered.requests[lo : lo + size]
        index = order[lo : lo + size]
        res = _sample_batch(ordered, k, lo, chunk, callback)
        info = frame_info(ordered, lo, chunk, index)
        ids = [r.material_id or sid for r, sid in zip(chunk, info["sample_id"], strict=True)]
        res = replace(res, ids=ids)
        failed = res.properties.get(FAILED)
        if failed is not None:  # numerical failures: the others are written, these counted
            keep = (failed == 0).tolist()
            res = res[torch.tensor(keep)]
            chunk = [r for r, ok in zip(chunk, keep, strict=True) if ok]
            index = [i for i, ok in zip(index, keep, strict=True) if ok]
            info = {key: [v for v, ok in zip(vals, keep, strict=True) if ok]
                    for key, vals in info.items()}
        res = replace(res, properties={})
        if plan.spec.consensus:  # plan_sampling keeps each composition's K in one batch
            from matgen.generate._consensus import pick_answers

            chunk, res, info, index = pick_answers(
                plan.spec.consensus, chunk, res, info, index, too_close(res),
                f"{plan.checkpoint_id}-s{plan.spec.seed}", plan.energies)
        yield SampledBatch(chunk, lo, res, info,
                           0 if failed is None else int((failed != 0).sum()), index)


def plan_fingerprint(plan: SamplePlan) -> str:
    """sha256 of everything that decides the frames a plan writes (weights, sampler, seeds,
    batches and their order (:func:`batch_order`), requests, drawn targets, options): a finished
    batch of one run is the same batch in another run with the same fingerprint."""
    import hashlib
    import json

    spec = plan.spec
    doc = {
        "checkpoint": plan.checkpoint_id, "sampler": plan.sampler, "steps": plan.steps,
        "seed": spec.seed, "batch_size": spec.batch_size, "task": spec.task,
        "guidance": float(spec.guidance), "precision": spec.precision,
        "device": plan.device.type, "chemsys": spec.chemsys,
        "flow_slope": getattr(getattr(plan.diffusion, "cfg", None), "flow_slope", None),
        "type_temperature": getattr(getattr(plan.diffusion, "cfg", None), "type_temperature",
                                    None),
        "targets": [t.describe() for t in plan.targets],
        "values": {k: [float(x) for x in v] for k, v in plan.values.items()},
        "requests": [[r.num_atoms, list(r.atomic_numbers or ()), r.composition, r.material_id]
                     for r in plan.requests],
        "batch_order": batch_order(plan),
    }
    doc.update(set_options(plan))  # absent at their defaults: earlier fingerprints stay
    if plan.denovo == "composition":  # absent for joint de novo: earlier fingerprints stay
        doc["denovo"], doc["composition_temperature"] = "composition", plan.composition_temperature
    if spec.consensus:  # absent otherwise: fingerprints of plain runs stay as they were
        doc["consensus"], doc["select_by"] = spec.consensus, spec.select_by
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _drive(plan: SamplePlan, progress: bool, sink: Callable[[SampledBatch], None],
           start: int = 0) -> float:
    """Run every batch from ``start`` on into ``sink``; the seconds it took.

    Progress (stderr, :class:`matgen._progress.Progress`): one unit per sampler step of a
    batch, ``batches x steps`` in all, so a long batch moves and has an ETA; a resumed run
    starts at its finished batches.
    """
    from matgen._progress import Progress

    total = num_batches(plan) * plan.steps
    bar = Progress("sample", total=total, unit="denoising steps", enabled=progress)
    bar.update(done=min(start, num_batches(plan)) * plan.steps)  # before its first line
    t0 = time.perf_counter()
    with bar:
        step = (lambda _i, _n, _state: bar.advance()) if progress else None
        for item in sample_batches(plan, start, step):
            sink(item)
            # exact at each batch's end, whatever number of calls its sampler made
            bar.update(done=(item.offset // plan.spec.batch_size + 1) * plan.steps)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------- the two ends
def _silent(_msg: str) -> None:
    pass


def generate(
    out: str | Path,
    checkpoint: str | Path | None = None,
    num: int = 1,
    *,
    progress: bool = True,
    log: Log | None = print,
    energies: Callable[[list], Sequence[float]] | None = None,
    **options: Any,
) -> SampleResult:
    """Generate crystals from a checkpoint and stream them to an extxyz file.

    Args:
        out: output ``.extxyz`` / ``.xyz``, or ``.cif`` (one data block per crystal, the
            frame info as comments); ``out.partial`` grows while batches finish, and a
            killed run called again with the same options resumes from it (see
            :class:`matgen.generate._output.PartialExtxyz`).
        checkpoint: see :class:`SampleSpec` (``None``: the shipped default model).
        num: de novo: structures in all; CSP: structures per composition / CSV row.
        progress: show progress on stderr, one unit per sampler step of a batch (a bar on a
            terminal, a plain line every ``$MATGEN_PROGRESS_SECONDS`` (20) s otherwise).
        log: where one-line notes go (``None``: silent).
        energies: structures -> single-point energies per atom, for ``select_by`` an MLIP.
        **options: the other fields of :class:`SampleSpec` (``task``, ``compositions``,
            ``compositions_from``, ``formula_units``, ``chemsys``, ``conditions``,
            ``guidance``, ``steps``, ``sampler`` (default ``auto``), ``seed``, ``batch_size``,
            ``device``).

    Each frame's ``info``: ``sample_id``, ``material_id`` (the CSV row's, CSP) , ``task``,
    ``composition`` (requested, CSP), ``checkpoint`` (weights sha256, 12 hex), ``seed``,
    ``sampler``, ``steps``, ``guidance``, ``conditions`` (the request, e.g.
    ``band_gap=1:2``), ``target_<name>`` (the value used), ``chemsys``.

    Frame order: batch order (:func:`batch_order`: by atom count when the requests span more
    than one batch, else input order), as batches are appended when they finish, so a killed
    run resumes from its finished batches. ``sample_id`` ends in the request's input-order
    index and ``material_id`` names a CSV row: pair frames by those, not by position.
    """
    output_format(out)  # an unknown suffix fails before any work
    plan = plan_sampling(SampleSpec(checkpoint=checkpoint, num=num, **options), log or _silent,
                         energies)
    writer = open_writer(out, plan_fingerprint(plan), log or _silent)
    written, failed = writer.frames_done, writer.failed_done
    new = n_close = 0

    def sink(item: SampledBatch) -> None:
        nonlocal written, failed, new, n_close
        if item.requests:
            writer.append(item.crystals, item.info, item.keep_id)
            n_close += count_too_close(item.crystals)
        writer.batch_done(len(item.requests), item.failed)
        written += len(item.requests)
        new += len(item.requests)
        failed += item.failed

    elapsed = _drive(plan, progress, sink, writer.batches_done)
    path = writer.finish()
    if failed and log is not None:
        log(f"{failed} structure(s) failed numerically during sampling (non-finite values) and "
            "were not written; more sampler steps usually avoid this")
    return SampleResult(path, written, plan.checkpoint_id, elapsed,
                        new / elapsed if elapsed > 0 else math.inf, plan.skipped, n_close)


def sample_structures(
    num: int = 1,
    checkpoint: str | Path | None = None,
    *,
    out: str | Path | None = None,
    progress: bool = False,
    log: Log | None = None,
    energies: Callable[[list], Sequence[float]] | None = None,
    **options: Any,
) -> list:
    """Generate crystals and return them as pymatgen ``Structure`` objects (``matgen.sample``).

    The same options and defaults as :func:`generate` (:class:`SampleSpec`: the shipped model,
    de novo, the ``auto`` sampler as in ``matgen sample``), the same structures for the same
    seed. Each structure's ``properties`` hold the frame info :func:`generate` writes
    (``sample_id``, ``checkpoint``, ``sampler``, ``steps``, ``target_<name>``, ...; a CSV row's
    ``material_id``). With ``out`` the structures are also written there (extxyz or CIF, in
    batch order as :func:`generate` writes them).

    The list is in request order (``sample_id`` ``..-0``, ``..-1``, ...), whatever the batch
    order (:func:`batch_order`); a structure that failed numerically is left out.
    """
    if out is not None:
        output_format(out)
    plan = plan_sampling(SampleSpec(checkpoint=checkpoint, num=num, **options), log or _silent,
                         energies)
    writer = open_writer(out, None, log or _silent) if out is not None else None
    structures: list[tuple[int, Any]] = []

    def sink(item: SampledBatch) -> None:
        if not item.requests:  # every crystal of the batch failed numerically
            return
        if writer is not None:
            writer.append(item.crystals, item.info, item.keep_id)
        for i, (s, keep) in enumerate(zip(item.crystals.to_structures(), item.keep_id,
                                          strict=True)):
            if not keep:
                s.properties.pop("material_id", None)
            s.properties.update({k: v[i] for k, v in item.info.items()})
            structures.append((item.index[i], s))

    _drive(plan, progress, sink)
    if writer is not None:
        writer.finish()
    return [s for _, s in sorted(structures, key=lambda t: t[0])]

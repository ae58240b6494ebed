"""Sampling from a checkpoint to an extxyz file (the Python side of ``matgen sample``).

Requests are expanded to one entry per output structure, cut into batches of
``batch_size`` crystals, generated with :func:`matgen.diffusion.sample` (predictor-corrector)
or :func:`matgen.diffusion.sample_fast`, and appended to ``OUT.partial`` as each batch
finishes (a crash keeps the finished batches there); ``OUT.partial`` is renamed to ``OUT`` at
the end.

Reproducibility: batch ``k`` uses a generator seeded with ``seed * 1_000_003 + k`` on the
sampling device, so the same checkpoint, requests, seed, batch size and device give the same
structures.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from matgen.crystal import MAX_Z
from matgen.training._checkpoint import resolve_checkpoint, weights_id
from matgen.training._conditions import ConditionSpec, parse_condition

#: Where ``matgen sample`` looks when ``--checkpoint`` is omitted.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "default"


class SampleInputError(ValueError):
    """Bad sampling input (one line, meant for the user)."""


@dataclass(frozen=True)
class Request:
    """One structure to generate.

    Attributes:
        atomic_numbers: the atoms of the cell (CSP), or ``None`` (de novo).
        num_atoms: atoms in the cell.
        composition: requested formula (CSP), e.g. ``Na4Cl4``; ``""`` for de novo.
        material_id: the source row's id (CSP from a CSV), else ``""``.
    """

    atomic_numbers: tuple[int, ...] | None
    num_atoms: int
    composition: str = ""
    material_id: str = ""


@dataclass
class SampleResult:
    """What :func:`generate` wrote.

    Attributes:
        path: the extxyz file.
        num_structures: frames written.
        checkpoint_id: short sha256 of the weights.
        elapsed_s: wall-clock seconds of generation (loading excluded).
        structures_per_s: ``num_structures / elapsed_s``.
        skipped: one-line reasons for input rows that could not be used.
    """

    path: Path
    num_structures: int
    checkpoint_id: str
    elapsed_s: float
    structures_per_s: float
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- compositions
def _formula_atoms(formula: str) -> list[int]:
    from pymatgen.core import Composition

    try:
        comp = Composition(formula)
    except (ValueError, KeyError) as e:  # pymatgen raises both for bad formulas
        raise SampleInputError(f"bad formula {formula!r}: {e}") from None
    if len(comp) == 0:
        raise SampleInputError(f"bad formula {formula!r}: no elements")
    if not comp.valid:  # pymatgen reads unknown symbols as dummy species
        raise SampleInputError(f"bad formula {formula!r}: unknown element")
    zs: list[int] = []
    for el, amt in sorted(comp.items(), key=lambda t: t[0].Z):
        n = round(float(amt))
        if abs(float(amt) - n) > 1e-6 or n < 1:
            raise SampleInputError(f"bad formula {formula!r}: {el} count {amt} is not a whole number")
        if el.Z > MAX_Z:
            raise SampleInputError(f"bad formula {formula!r}: {el} (Z={el.Z}) beyond Z={MAX_Z}")
        zs.extend([el.Z] * n)
    return zs


def _compact(zs: Sequence[int]) -> str:
    from pymatgen.core import Composition
    from pymatgen.core.periodic_table import Element

    counts: dict[str, int] = {}
    for z in zs:
        s = Element.from_Z(int(z)).symbol
        counts[s] = counts.get(s, 0) + 1
    # electronegativity order, counts of 1 omitted: "SrTiO3", "Na2Cl2"
    return re.sub(r"(?<=[A-Za-z])1(?![0-9])", "", Composition(counts).formula.replace(" ", ""))


def _units_weights(meta: dict) -> tuple[list[int], torch.Tensor]:
    hist = (meta.get("dataset_stats") or {}).get("formula_units_hist") or {"1": 1}
    keys = sorted(int(k) for k in hist)
    return keys, torch.tensor([float(hist[str(k)]) for k in keys])


def expand_formula(
    formula: str,
    formula_units: int | Literal["as-written", "auto"],
    meta: dict,
    generator: torch.Generator,
) -> list[int]:
    """Atomic numbers of one cell for ``formula``.

    ``as-written`` takes the counts literally (``Na4Cl4``: 8 atoms, ``NaCl``: 2); an integer
    ``Z`` multiplies the reduced formula by ``Z``; ``auto`` draws ``Z`` from the training set's
    formula-units histogram (checkpoint metadata), restricted to cells no larger than the
    largest training cell.
    """
    from pymatgen.core import Composition

    if formula_units == "as-written":
        return _formula_atoms(formula)
    reduced = Composition(formula).reduced_formula if formula else formula
    base = _formula_atoms(reduced)
    if formula_units == "auto":
        keys, w = _units_weights(meta)
        hist = (meta.get("dataset_stats") or {}).get("num_atoms_hist") or {}
        max_atoms = max((int(k) for k in hist), default=10**9)
        ok = torch.tensor([k * len(base) <= max_atoms for k in keys])
        if not ok.any():
            z = 1
        else:
            w = torch.where(ok, w, torch.zeros_like(w))
            z = keys[int(torch.multinomial(w, 1, generator=generator))]
    else:
        z = int(formula_units)
        if z < 1:
            raise SampleInputError("formula units must be >= 1")
    return base * z


def requests_from_formulas(
    formulas: Sequence[str], num: int, formula_units, meta: dict, generator: torch.Generator
) -> list[Request]:
    """``num`` CSP requests per formula (the cell drawn per request when ``auto``)."""
    out = []
    for f in formulas:
        for _ in range(num):
            zs = expand_formula(f, formula_units, meta, generator)
            out.append(Request(tuple(zs), len(zs), _compact(zs)))
    return out


def requests_from_csv(
    path: str | Path, num: int, formula_units, meta: dict, generator: torch.Generator
) -> tuple[list[Request], list[str]]:
    """CSP requests from a CSV with ``material_id`` and ``cif`` or ``formula`` columns.

    A ``cif`` column gives exact atom counts (the structure's cell, read by
    :func:`matgen.crystal.read_crystals`; a CIF that does not parse is skipped with its
    reason); otherwise ``formula`` is expanded per ``formula_units``. ``num`` requests per row, each carrying the row's
    ``material_id`` (the row number when the column is absent).

    Returns:
        ``(requests, skipped)`` with one line per unusable row.
    """
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise SampleInputError(f"{path}: cannot read CSV ({e})") from None
    cols = set(df.columns)
    if "cif" not in cols and "formula" not in cols:
        raise SampleInputError(f"{path}: needs a 'cif' or 'formula' column (has {sorted(cols)})")
    ids = (df["material_id"].astype(str).tolist() if "material_id" in cols
           else [str(i) for i in range(len(df))])
    out: list[Request] = []
    skipped: list[str] = []
    if "cif" in cols:  # exact cells, parsed in parallel by matgen.crystal.read_crystals
        from matgen.crystal import ValidationOptions, read_crystals

        lenient = ValidationOptions(min_distance=0.0, min_volume_per_atom=0.0)
        res = read_crystals(path, options=lenient)
        skipped = [str(e) for e in res.errors]
        batch = res.batch
        ptr = batch.ptr.tolist()
        z_all = batch.atomic_numbers.tolist()
        for i, mid in enumerate(batch.ids):
            zs = sorted(z_all[ptr[i] : ptr[i + 1]])
            comp = _compact(zs)
            out.extend(Request(tuple(zs), len(zs), comp, str(mid)) for _ in range(num))
        return out, skipped
    for row, (mid, formula) in enumerate(zip(ids, df["formula"].astype(str), strict=True)):
        try:
            for _ in range(num):
                zs = expand_formula(formula, formula_units, meta, generator)
                out.append(Request(tuple(zs), len(zs), _compact(zs), mid))
        except SampleInputError as e:
            skipped.append(f"{path.name}:row {row + 1} ({mid}): {e}")
    return out, skipped


def requests_de_novo(num: int, meta: dict, generator: torch.Generator) -> list[Request]:
    """``num`` de novo requests with atom counts drawn from the training histogram."""
    hist = (meta.get("dataset_stats") or {}).get("num_atoms_hist")
    if not hist:
        stats = meta.get("stats")
        hist = getattr(stats, "num_atoms_counts", None) or (stats or {}).get("num_atoms_counts")
    if not hist:
        raise SampleInputError("the checkpoint has no atoms-per-cell histogram for de novo")
    keys = sorted(int(k) for k in hist)
    w = torch.tensor([float(hist[k] if k in hist else hist[str(k)]) for k in keys])
    idx = torch.multinomial(w, num, replacement=True, generator=generator)
    return [Request(None, keys[int(i)]) for i in idx]


# ---------------------------------------------------------------------- generation
def load_for_sampling(checkpoint: str | Path | None, device: torch.device):
    """``(denoiser, diffusion, metadata, checkpoint_dir)`` from a checkpoint folder/file/run."""
    from matgen.models import load_checkpoint
    from matgen.training._loop import cached_diffusion

    if checkpoint is None:
        if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"no default model at {DEFAULT_MODEL_DIR}: pass --checkpoint "
                "(a checkpoint folder, e.g. RUN_DIR/checkpoints/last, made by `matgen train`)"
            )
        checkpoint = DEFAULT_MODEL_DIR
    ckpt = resolve_checkpoint(checkpoint)
    model, meta = load_checkpoint(ckpt, device=device)
    if meta.get("diffusion") is None or meta.get("stats") is None:
        raise ValueError(f"{ckpt}: checkpoint metadata lacks the diffusion config or stats")
    diffusion = cached_diffusion(meta["diffusion"], meta["stats"])
    return model, diffusion, meta, ckpt


def _condition_names(model) -> list[str]:
    cfg = getattr(model, "cfg", None)
    return [c.name for c in getattr(cfg, "conditions", [])]


def generate(
    out: str | Path,
    checkpoint: str | Path | None = None,
    num: int = 1,
    *,
    task: Literal["gen", "csp"] = "gen",
    compositions: Sequence[str] = (),
    compositions_from: str | Path | None = None,
    formula_units: int | Literal["as-written", "auto"] = "as-written",
    chemsys: str | None = None,
    conditions: Sequence[str | ConditionSpec] = (),
    guidance: float = 1.0,
    steps: int | None = None,
    sampler: Literal["pc", "fast", "consistency", "auto"] = "pc",
    seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> SampleResult:
    """Generate crystals from a checkpoint and stream them to an extxyz file.

    Args:
        out: output ``.extxyz`` (``out.partial`` grows while batches finish).
        checkpoint: a checkpoint folder, its ``model.safetensors``, or a run dir (its newest
            checkpoint); ``None``: the shipped default model.
        num: de novo: structures in all; CSP: structures per composition / CSV row.
        task: ``gen`` (de novo) or ``csp``; compositions imply ``csp``.
        compositions: formulas for CSP.
        compositions_from: CSV with ``material_id`` and ``cif`` or ``formula`` (CSP).
        formula_units: how a formula becomes a cell (see :func:`expand_formula`).
        chemsys: ``A-B-C``: de novo atoms are restricted to these elements.
        conditions: ``KEY=VALUE``, ``KEY=LO:HI``, ``KEY=:HI``, ``KEY=LO:`` targets; a range
            is sampled uniformly per structure (the drawn value is recorded).
        guidance: classifier-free guidance scale (1: plain conditional model).
        steps: sampler steps (default 1000 for ``pc``, 50 for ``fast``, 2 for
            ``consistency``).
        sampler: ``pc`` predictor-corrector, ``fast`` the few-step deterministic sampler,
            ``consistency`` the 1-4 step sampler of a consistency-distilled checkpoint,
            ``auto`` consistency for a distilled checkpoint, fast on CPU when ``steps`` is not
            given, pc otherwise.
        seed: base seed.
        batch_size: crystals per denoiser batch.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: show a progress bar.
        log: where one-line notes go (``None``: silent).

    Each frame's ``info``: ``sample_id``, ``material_id`` (the CSV row's, CSP) , ``task``,
    ``composition`` (requested, CSP), ``checkpoint`` (weights sha256, 12 hex), ``seed``,
    ``sampler``, ``steps``, ``guidance``, ``conditions`` (the request, e.g.
    ``band_gap=1:2``), ``target_<name>`` (the value used), ``chemsys``.
    """
    from matgen.diffusion import sample, sample_consistency, sample_fast

    say = log or (lambda _m: None)
    dev = torch.device("cuda" if (device == "auto" and torch.cuda.is_available()) else
                       ("cpu" if device == "auto" else device))
    if num < 1:
        raise SampleInputError("--num must be >= 1")
    if batch_size < 1:
        raise SampleInputError("--batch-size must be >= 1")
    if compositions or compositions_from is not None:
        task = "csp"
    if task == "csp" and not compositions and compositions_from is None:
        raise SampleInputError("--task csp needs --composition or --compositions-from")
    if compositions and compositions_from is not None:
        raise SampleInputError("use --composition or --compositions-from, not both")
    specs = [parse_condition(c) if isinstance(c, str) else c for c in conditions]
    if len({s.name for s in specs}) != len(specs):
        raise SampleInputError("a condition is given twice")

    model, diffusion, meta, ckpt = load_for_sampling(checkpoint, dev)
    ckpt_id = weights_id(ckpt)
    known = _condition_names(model)
    for s in specs:
        if s.name not in known:
            raise SampleInputError(
                f"condition {s.name!r}: the checkpoint was trained on {known or 'no conditions'}"
            )
    distilled = bool(meta.get("distill"))
    if sampler == "auto":
        if distilled:
            sampler = "consistency"
        elif dev.type == "cpu" and steps is None:
            # the 1000-step predictor-corrector takes hours for 100 crystals on a laptop CPU
            sampler = "fast"
            say("note: on CPU the default sampler is fast (50 ODE steps); pass --sampler pc "
                "for the 1000-step predictor-corrector (better, ~40x slower)")
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
    trained_task = meta.get("task")
    if task == "gen" and trained_task == "csp":
        say("warning: this checkpoint was trained for CSP only; de novo atom types are untrained")
    if task == "csp" and trained_task == "gen":
        say("note: this checkpoint was trained de novo only; CSP uses its coordinate/lattice heads")
    type_mask = None
    if chemsys:
        from matgen.guidance import chemsys_type_mask

        if task == "csp":
            raise SampleInputError("--chemsys applies to de novo generation (CSP fixes the atoms)")
        type_mask = chemsys_type_mask(chemsys, getattr(model.cfg, "num_types", MAX_Z)).to(dev)

    g_req = torch.Generator().manual_seed(seed)
    skipped: list[str] = []
    if task == "csp":
        if compositions_from is not None:
            reqs, skipped = requests_from_csv(compositions_from, num, formula_units, meta, g_req)
        else:
            reqs = requests_from_formulas(compositions, num, formula_units, meta, g_req)
    else:
        reqs = requests_de_novo(num, meta, g_req)
    for line in skipped:
        say(line)
    if not reqs:
        raise SampleInputError("nothing to generate (no usable compositions)")
    cond_stats = meta.get("conditions") or {}
    targets = {
        s.name: s.draw(len(reqs), cond_stats.get(s.name, {"mean": 0.0, "std": 1.0}), g_req)
        for s in specs
    }
    cond_text = ";".join(s.describe() for s in specs)
    n_steps = steps if steps is not None else {"pc": 1000, "fast": 50, "consistency": 2}[sampler]
    fn = {"pc": sample, "fast": sample_fast, "consistency": sample_consistency}[sampler]

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        partial.unlink()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(reqs), desc="sample", unit="struct", dynamic_ncols=True)
    written = 0
    t0 = time.perf_counter()
    try:
        for k, lo in enumerate(range(0, len(reqs), batch_size)):
            chunk = reqs[lo : lo + batch_size]
            na = torch.tensor([r.num_atoms for r in chunk], dtype=torch.long, device=dev)
            zs = None
            if task == "csp":
                zs = torch.tensor([z for r in chunk for z in r.atomic_numbers], device=dev)
            cond = None
            if specs:
                cond = {n: v[lo : lo + len(chunk)].to(dev, torch.float32)
                        for n, v in targets.items()}
            gen = torch.Generator(device=dev).manual_seed(seed * 1_000_003 + k)
            kwargs = {}
            if type_mask is not None:
                kwargs["type_mask"] = type_mask
            with torch.no_grad():
                res = fn(model, diffusion, na, zs, steps=n_steps, cond=cond, guidance=guidance,
                         generator=gen, **kwargs)
            res = res.to("cpu")
            sids = [f"{ckpt_id}-s{seed}-{lo + i}" for i in range(len(chunk))]
            res = replace(res, properties={},
                          ids=[r.material_id or sid for r, sid in zip(chunk, sids, strict=True)])
            info: dict[str, list] = {
                "sample_id": sids,
                "task": [task] * len(chunk),
                "checkpoint": [ckpt_id] * len(chunk),
                "seed": [seed] * len(chunk),
                "sampler": [sampler] * len(chunk),
                "steps": [n_steps] * len(chunk),
                "guidance": [float(guidance)] * len(chunk),
            }
            if task == "csp":
                info["composition"] = [r.composition for r in chunk]
            if specs:
                info["conditions"] = [cond_text] * len(chunk)
                for n, v in targets.items():
                    info[f"target_{n}"] = [float(x) for x in v[lo : lo + len(chunk)]]
            if chemsys:
                info["chemsys"] = [chemsys] * len(chunk)
            _append_extxyz(partial, res, info, [bool(r.material_id) for r in chunk])
            written += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t0
    os.replace(partial, out)
    return SampleResult(out, written, ckpt_id, elapsed,
                        written / elapsed if elapsed > 0 else math.inf, skipped)


def _append_extxyz(path: Path, batch, info: dict[str, list], keep_id: list[bool]) -> None:
    """Append one batch's frames with :func:`matgen.crystal.write_extxyz` (file closed after,
    so finished batches are on disk)."""
    from matgen.crystal import write_extxyz

    atoms = batch.to_atoms()
    for a, keep in zip(atoms, keep_id, strict=True):
        if not keep:  # no source row: the sample_id identifies the frame
            a.info.pop("material_id", None)
    write_extxyz(path, atoms, info=info, append=path.exists())

"""`matgen sample`: generate crystals (de novo or CSP, optionally conditioned) to extxyz or CIF.

A thin wrapper over :func:`matgen.generate.generate`. Results are appended to
``OUT.partial`` as each batch finishes (a crash keeps them) and renamed to ``OUT`` at the end;
the same command run again after a kill resumes from the finished batches (a partial file from
other options is kept aside as ``OUT.partial.kept-N``, never deleted).
Exit codes: 0 ok, 1 bad input data, 2 usage error.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from matgen._errors import MatgenError
from matgen.cli._app import app, fail

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)


class Task(str, Enum):
    gen = "gen"
    csp = "csp"


class Sampler(str, Enum):
    pc = "pc"
    fast = "fast"
    consistency = "consistency"


def _formula_units(text: str):
    if text in ("as-written", "auto"):
        return text
    try:
        z = int(text)
    except ValueError:
        z = 0
    if z < 1:
        fail(f"--formula-units must be as-written, auto or a positive integer (got {text!r})", 2)
    return z


OutOpt = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Output file: .extxyz (or .xyz) with per-crystal metadata, or .cif "
        "(one data block per crystal, metadata as comments).",
    ),
]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        help="Checkpoint folder (RUN_DIR/checkpoints/last), its model.safetensors, "
        "or a run dir; default: the shipped model."
    ),
]
NumOpt = Annotated[
    int,
    typer.Option(
        "--num", "-n", min=1, help="De novo: structures in all; CSP: per composition / CSV row."
    ),
]
TaskOpt = Annotated[Task, typer.Option(help="gen (de novo) or csp.")]
CompositionOpt = Annotated[
    list[str] | None,
    typer.Option(help="Formula for CSP (repeat the option, or comma-separate)."),
]
CompositionsFromOpt = Annotated[
    Path | None,
    typer.Option(help="CSV with material_id and cif or formula columns (CSP). A row that "
                 "cannot be used is named and skipped, the others sampled (then exit 1)."),
]
FormulaUnitsOpt = Annotated[
    str,
    typer.Option(
        help="Formula -> cell: as-written (exact counts), N (reduced formula x N), "
        "or auto (Z drawn from the training distribution)."
    ),
]
ChemsysOpt = Annotated[str | None, typer.Option(help="De novo: only these elements, e.g. Li-Fe-O.")]
ConditionOpt = Annotated[
    list[str] | None,
    typer.Option(help="KEY=VALUE, KEY=LO:HI, KEY=:HI or KEY=LO: (repeatable)."),
]
GuidanceOpt = Annotated[
    float,
    typer.Option(help="Classifier-free guidance scale, >= 0 (0: unconditional, 1: plain "
                 "conditional, > 1: stronger pull to the targets)."),
]
StepsOpt = Annotated[
    int | None, typer.Option(min=1, help="Sampler steps (default 1000 pc, 50 fast (for CSP the model's own where it sets one), 2 consistency).")
]
SamplerOpt = Annotated[
    Sampler | None,
    typer.Option(
        help="pc (predictor-corrector), fast (few-step ODE/DDIM) or consistency "
        "(1-4 steps, a distilled checkpoint); default: consistency for a "
        "distilled checkpoint, fast for a flow-matching one (the shipped model), "
        "fast on CPU without --steps, else pc."
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Random seed.")]
BatchSizeOpt = Annotated[int, typer.Option(min=1, help="Crystals per batch.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
TypeTemperatureOpt = Annotated[
    float | None,
    typer.Option(
        help="De novo: atom types drawn from softmax(logits / T); < 1 gives fewer stray "
        "elements per crystal (default: the checkpoint's, else 1)."
    ),
]
TypeOrderOpt = Annotated[
    str | None,
    typer.Option(
        metavar="<random|confidence>",
        help="De novo: which masked atoms each step reveals: random ones or the ones whose "
        "drawn type is the most probable (default: the checkpoint's, else random).",
    ),
]
TypeRemaskOpt = Annotated[
    float | None,
    typer.Option(
        help="De novo: rate per unit time at which revealed atom types are masked again and "
        "redrawn, 0 = never (default: the checkpoint's, else 0).",
    ),
]
DenovoOpt = Annotated[
    str | None,
    typer.Option(
        help="De novo: joint (the denoiser draws atom types with the structure) or composition "
        "(the checkpoint's composition model draws each cell's atoms, then the denoiser "
        "predicts their structure as in CSP) (default: the checkpoint's, else joint).",
    ),
]
CompositionTemperatureOpt = Annotated[
    float | None,
    typer.Option(
        help="With --denovo composition: the composition model's logits are divided by it; "
        "< 1 draws more typical compositions (default: the checkpoint's, else 1).",
    ),
]
FlowSlopeOpt = Annotated[
    float | None,
    typer.Option(
        help="Flow-matching checkpoints: coordinate anti-annealing slope (default: the "
        "checkpoint's)."
    ),
]
ClashScaleOpt = Annotated[
    float | None,
    typer.Option(
        help="Flow-matching checkpoints: push apart atoms closer than this fraction of their "
        "covalent bond length after each step, 0 = off (default: the checkpoint's).",
    ),
]
ClashFloorOpt = Annotated[
    float | None,
    typer.Option(
        help="Flow-matching checkpoints: the same push for any two atoms closer than this "
        "many Å, 0 = none (default: the checkpoint's).",
    ),
]
ConsensusOpt = Annotated[
    int | None,
    typer.Option(
        min=2,
        help="CSP: choose each answer from K samples of its composition, the one the most "
        "others match (pymatgen StructureMatcher); frames get consensus_votes (of K-1), a "
        "confidence. K times the sampling.",
    ),
]
SelectByOpt = Annotated[
    str,
    typer.Option(
        help="With --consensus: votes (the sample the most others match) or an MLIP "
        "(chgnet, sevennet, sevennet-0): the sample of lowest single-point energy per atom "
        "(frames get consensus_energy).",
    ),
]
PrecisionOpt = Annotated[
    str, typer.Option(help="Denoiser arithmetic: auto (bf16 on CUDA, fp32 on CPU), bf16 or fp32.")
]
CifZipOpt = Annotated[
    Path | None,
    typer.Option(
        "--cif-zip",
        help="Also write the crystals as symmetrised CIFs (SAMPLE_ID.cif, "
        "sampling metadata as comments) in this zip, beside an extxyz --out.",
    ),
]
ProgressOpt = Annotated[
    bool,
    typer.Option(
        help="Progress on stderr per sampler step, with an ETA: a bar on a terminal, a line "
        "every 20 s otherwise."
    ),
]
MoreArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="MORE",
        show_default=False,
        help="More formulas after --composition's first, or more KEY=... "
        "after --condition's first.",
    ),
]


@app.command("sample")
def sample(
    out: OutOpt,
    checkpoint: CheckpointOpt = None,
    num: NumOpt = 1,
    task: TaskOpt = Task.gen,
    composition: CompositionOpt = None,
    compositions_from: CompositionsFromOpt = None,
    formula_units: FormulaUnitsOpt = "as-written",
    chemsys: ChemsysOpt = None,
    condition: ConditionOpt = None,
    guidance: GuidanceOpt = 1.0,
    steps: StepsOpt = None,
    sampler: SamplerOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchSizeOpt = 64,
    device: DeviceOpt = "auto",
    flow_slope: FlowSlopeOpt = None,
    clash_scale: ClashScaleOpt = None,
    clash_floor: ClashFloorOpt = None,
    type_temperature: TypeTemperatureOpt = None,
    type_order: TypeOrderOpt = None,
    type_remask: TypeRemaskOpt = None,
    denovo: DenovoOpt = None,
    composition_temperature: CompositionTemperatureOpt = None,
    consensus: ConsensusOpt = None,
    select_by: SelectByOpt = "votes",
    precision: PrecisionOpt = "auto",
    cif_zip: CifZipOpt = None,
    progress: ProgressOpt = True,
    more: MoreArg = None,
) -> None:
    """Generate crystals from a trained checkpoint into an extxyz or CIF file.

    --composition A B C and --condition K=V K2=LO:HI also take several values after one flag.
    """
    from matgen.generate import generate

    _check_outputs(out, cif_zip)
    if device not in ("auto", "cpu", "cuda"):
        fail(f"--device must be auto, cpu or cuda (got {device!r})", 2)
    if precision not in ("auto", "bf16", "fp32"):
        fail(f"--precision must be auto, bf16 or fp32 (got {precision!r})", 2)
    formulas, condition = _split_more(composition, condition, more)
    if compositions_from is not None and not compositions_from.is_file():
        fail(f"--compositions-from {compositions_from}: not found", 2)
    if checkpoint is not None and not checkpoint.exists():
        fail(f"--checkpoint {checkpoint}: not found", 2)
    energies = None
    if select_by != "votes":
        from matgen.surrogates import energy_function

        try:
            energies = energy_function(select_by, device)
        except ValueError as e:
            fail(f"--select-by: {e}", 2)
    try:
        res = generate(
            out, checkpoint, num, task=task.value, compositions=formulas,
            compositions_from=compositions_from, formula_units=_formula_units(formula_units),
            chemsys=chemsys, conditions=condition, guidance=guidance, steps=steps,
            sampler=sampler.value if sampler is not None else "auto", seed=seed,
            batch_size=batch_size, device=device, precision=precision, flow_slope=flow_slope,
            clash_scale=clash_scale, clash_floor=clash_floor, type_temperature=type_temperature, type_order=type_order,
            type_remask=type_remask, denovo=denovo,
            composition_temperature=composition_temperature, consensus=consensus,
            select_by=select_by,
            energies=energies, progress=progress,
            log=lambda m: _err.print(escape(m)),
        )  # fmt: skip
    except MatgenError:
        raise  # its kind says the exit code (matgen.cli._app): SampleDataError 1, others 2
    except (FileNotFoundError, ValueError) as e:  # bad condition, chemsys element, checkpoint
        fail(str(e), 2)
    _out.print(
        f"wrote {res.num_structures} structures to {escape(str(res.path))} "
        + (f"(each chosen from {consensus} samples by {select_by}; " if consensus else "(")
        + f"{res.structures_per_s:.2f} structures/s, checkpoint {res.checkpoint_id})"
        + (f"; skipped {len(res.skipped)} input rows" if res.skipped else "")
        + (f"; {res.too_close} with atoms closer than 0.5 Å (matgen score and campaigns reject "
           "those)" if res.too_close else "")
    )
    if cif_zip is not None:
        n = _write_cif_zip(cif_zip, res.path, progress)
        _out.print(f"wrote {n} symmetrised CIFs to {escape(str(cif_zip))}")
    if res.skipped:  # the good rows are written; bad input data still says so (exit 1)
        raise typer.Exit(1)


def _check_outputs(out: Path, cif_zip: Path | None) -> None:
    """Output names and paths checked before loading the model and sampling (exit 2)."""
    from matgen.cli._paths import output_file_problem

    if out.suffix.lower() not in (".extxyz", ".xyz", ".cif"):
        fail(f"--out {out}: unknown output format {out.suffix or '(no suffix)'!r}; "
             "use .extxyz (or .xyz) or .cif", 2)  # fmt: skip
    if cif_zip is not None and cif_zip.suffix.lower() != ".zip":
        fail(f"--cif-zip {cif_zip}: give a .zip file name", 2)
    if cif_zip is not None and out.suffix.lower() == ".cif":
        fail("--cif-zip goes with an .extxyz --out (a .cif --out already holds one CIF per "
             "crystal)", 2)  # fmt: skip
    for flag, path in (("--out", out), ("--cif-zip", cif_zip)):
        why = output_file_problem(path, flag) if path is not None else None
        if why is not None:
            fail(why, 2)


def _split_more(
    composition: list[str] | None, condition: list[str] | None, more: list[str] | None
) -> tuple[list[str], list[str]]:
    """The formulas (comma-separated ones split) and conditions, with the extra arguments
    after ``--composition``'s or ``--condition``'s first value added to them."""
    composition, condition = list(composition or []), list(condition or [])
    for extra in more or []:
        if "=" in extra and condition:
            condition.append(extra)
        elif "=" not in extra and composition:
            composition.append(extra)
        else:
            fail(f"unexpected argument {extra!r}", 2)
    formulas = [f.strip() for c in composition for f in c.split(",") if f.strip()]
    return formulas, condition


def _write_cif_zip(path: Path, extxyz: Path, progress: bool) -> int:
    """The crystals of the finished ``extxyz`` (a resumed run's earlier batches included) as
    ``<sample_id>.cif`` in a zip, each frame's sampling metadata as comments; how many."""
    import warnings

    from ase.io import read

    from matgen._progress import Progress
    from matgen.cli._cifzip import write_cif_zip
    from matgen.crystal import CrystalBatch

    frames = read(str(extxyz), index=":", format="extxyz") if extxyz.stat().st_size else []
    ids = [
        str(a.info.get("sample_id") or a.info.get("material_id") or i) for i, a in enumerate(frames)
    ]
    structures = CrystalBatch.from_atoms(frames, ids=ids).to_structures() if frames else []

    def items():
        for a, sid, s in zip(frames, ids, structures, strict=True):
            head = f"matgen sample: {sid} ({s.composition.reduced_formula}), not relaxed"
            notes = [head, *(f"{k} = {' '.join(str(v).split())}" for k, v in a.info.items())]
            yield sid, s, notes
            bar.advance()

    # pymatgen's CIF rounding warnings are noise here: every CIF is re-read and matched
    with (
        Progress("cif zip", total=len(frames), unit="structures", enabled=progress) as bar,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        write_cif_zip(path, items())
    return len(frames)

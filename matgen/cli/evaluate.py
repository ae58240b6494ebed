"""`matgen evaluate`: CSP or de novo metrics of a generated extxyz against a reference CSV.

A thin wrapper over :mod:`matgen.evaluation`; writes a metrics JSON and a per-structure CSV.
Exit codes: 0 ok, 1 bad data, 2 usage error.
"""

from __future__ import annotations

import csv
import json
import math
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from matgen.cli._app import app, fail

_out = Console(highlight=False, soft_wrap=True)


class Task(str, Enum):
    csp = "csp"
    gen = "gen"


class SmactRules(str, Enum):
    cdvae = "cdvae"
    smact4 = "smact4"


class RefValidity(str, Enum):
    auto = "auto"
    require = "require"
    ignore = "ignore"


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item") and not isinstance(x, str):  # numpy scalars
        return _jsonable(x.item())
    return x


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})


TaskOpt = Annotated[Task, typer.Option(help="csp: match rate / RMSE; gen: de novo metrics.")]
GeneratedOpt = Annotated[Path, typer.Option(help="Generated frames (extxyz).")]
ReferenceOpt = Annotated[Path, typer.Option(help="Reference CSV (CDVAE format, cif column).")]
TrainOpt = Annotated[Path | None, typer.Option(help="Training CSV, for novelty (gen).")]
OutOpt = Annotated[Path | None, typer.Option(help="Metrics JSON (default: next to --generated).")]
PerStructureOpt = Annotated[
    Path | None, typer.Option(help="Per-structure CSV (default: next to --generated).")
]
PerReferenceOpt = Annotated[
    Path | None, typer.Option(help="CSP: also write one row per reference here.")
]
WorkersOpt = Annotated[int, typer.Option(min=0, help="Worker processes (0: all CPU cores).")]
KOpt = Annotated[
    int | None, typer.Option(min=1, help="CSP: use the first K samples per reference.")
]
RefValidityOpt = Annotated[
    RefValidity,
    typer.Option(
        help="CSP: require a valid reference (DiffCSP k=1), ignore it (CDVAE; DiffCSP k>1), "
        "or auto (DiffCSP's choice for this k)."
    ),
]
SmactRulesOpt = Annotated[
    SmactRules,
    typer.Option(
        help="Composition validity: cdvae (the published rule, smact 2.x semantics) or "
        "smact4 (smact 4's smact_validity defaults)."
    ),
]
FingerprintCheckOpt = Annotated[
    bool,
    typer.Option(
        help="CSP: a crystal whose CrystalNN fingerprint fails is invalid, as in the "
        "published Crystal class (slow)."
    ),
]
DatasetOpt = Annotated[
    str | None,
    typer.Option(help="gen: COV cut-offs of mp20, perov5 or carbon24 (default: from path)."),
]
StrucCutoffOpt = Annotated[float | None, typer.Option(help="gen: COV structure cut-off.")]
CompCutoffOpt = Annotated[float | None, typer.Option(help="gen: COV composition cut-off.")]
CoverageOpt = Annotated[bool, typer.Option(help="gen: compute COV (CrystalNN fingerprints; slow).")]
PropertyOpt = Annotated[
    str | None,
    typer.Option("--property", help="gen: Wasserstein distance of this frame-info/CSV field."),
]
NSamplesOpt = Annotated[
    int | None, typer.Option(help="gen: valid samples drawn for the distributions.")
]
SunOpt = Annotated[bool, typer.Option(help="gen: also S.U.N. (MLIP relaxation + hull; slow).")]
MlipOpt = Annotated[str, typer.Option(help="gen --sun: MLIP name.")]
ProgressOpt = Annotated[
    bool,
    typer.Option(help="Progress on stderr: a bar on a terminal, a line every 20 s otherwise."),
]

#: Per-structure columns that ``--sun`` adds to the de novo table.
_SUN_COLUMNS = ("e_above_hull_mlip", "rmsd_to_relaxed", "stable@0.1", "stable@0", "sun@0.1",
                "sun@0")  # fmt: skip
#: Metrics printed after a de novo evaluation (those present).
_GEN_SUMMARY = ("valid", "comp_valid", "struct_valid", "cov_recall", "cov_precision",
                "wdist_density", "wdist_num_elements", "wdist_property", "uniqueness",
                "novelty")  # fmt: skip

Summary = list[tuple[str, Any]]


@app.command("evaluate")
def evaluate(
    task: TaskOpt,
    generated: GeneratedOpt,
    reference: ReferenceOpt,
    train: TrainOpt = None,
    out: OutOpt = None,
    per_structure: PerStructureOpt = None,
    per_reference: PerReferenceOpt = None,
    workers: WorkersOpt = 0,
    k: KOpt = None,
    reference_validity: RefValidityOpt = RefValidity.auto,
    smact_rules: SmactRulesOpt = SmactRules.cdvae,
    fingerprint_check: FingerprintCheckOpt = False,
    dataset: DatasetOpt = None,
    struc_cutoff: StrucCutoffOpt = None,
    comp_cutoff: CompCutoffOpt = None,
    coverage: CoverageOpt = True,
    property_name: PropertyOpt = None,
    n_samples: NSamplesOpt = None,
    sun: SunOpt = False,
    mlip: MlipOpt = "chgnet",
    progress: ProgressOpt = True,
) -> None:
    """Evaluate generated crystals: CSP match rate / RMSE, or de novo metrics.

    CSP pairs frames with references by the frames' material_id; several frames per id are
    the k samples (best-of-k). Every metric follows the CDVAE / DiffCSP definitions.
    """
    from matgen import evaluation as ev

    stem = generated.with_suffix("")
    out = out or Path(f"{stem}.{task.value}_metrics.json")
    per_structure = per_structure or Path(f"{stem}.{task.value}_per_structure.csv")
    _check_outputs(out, per_structure, per_reference)
    nworkers = workers or (os.cpu_count() or 1)
    gen_set, ref_set, train_set = _read_inputs(ev, generated, reference, train)
    if task is Task.csp:
        metrics, rows, summary = _run_csp(
            ev, gen_set, ref_set, generated, reference, per_reference, k,
            reference_validity.value, smact_rules.value, fingerprint_check, nworkers, progress,
        )  # fmt: skip
    else:
        cfg = ev.GenConfig(
            dataset=dataset or ev.guess_dataset(reference),
            struc_cutoff=struc_cutoff,
            comp_cutoff=comp_cutoff,
            coverage=coverage,
            n_samples=n_samples,
            smact_rules=smact_rules.value,
        )
        metrics, rows, summary = _run_gen(
            ev, gen_set, ref_set, train_set, cfg, property_name, sun, mlip, nworkers, progress
        )
    metrics["generated_file"] = str(generated)
    metrics["reference_file"] = str(reference)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(metrics), indent=2) + "\n")
    _write_csv(per_structure, rows)
    _print_summary(summary)
    if task is Task.gen and sun:
        _out.print(f"note: {ev.STABILITY_NOTE}")
    _out.print(f"metrics -> {escape(str(out))}; per-structure -> {escape(str(per_structure))}")
    if metrics.get("unparsable_reference_ids"):  # the metrics are written: bad data, exit 1
        _name_unparsable_references(reference, metrics["unparsable_reference_ids"], task)
        raise typer.Exit(1)


def _check_outputs(out: Path, per_structure: Path, per_reference: Path | None) -> None:
    """Output paths that cannot be written end the command before any work (exit 2)."""
    from matgen.cli._paths import output_file_problem

    for flag, path in (("--out", out), ("--per-structure", per_structure),
                       ("--per-reference", per_reference)):  # fmt: skip
        why = output_file_problem(path, flag) if path is not None else None
        if why:
            fail(why, 2)


def _read_inputs(ev, generated: Path, reference: Path, train: Path | None):
    """The generated frames, the references and the training set (bad data, an
    :class:`~matgen.evaluation.EvaluationInputError`, exits 1)."""
    gen_set = ev.read_generated(generated)
    ref_set = ev.read_reference_csv(reference)
    train_set = ev.read_reference_csv(train) if train is not None else None
    if len(gen_set) == 0:
        fail(f"{generated}: no frames", 1)
    if len(ref_set) == 0:
        fail(f"{reference}: no rows", 1)
    return gen_set, ref_set, train_set


def _run_csp(
    ev, gen_set, ref_set, generated: Path, reference: Path, per_reference: Path | None,
    k: int | None, reference_validity: str, smact_rules: str, fingerprint_check: bool,
    workers: int, progress: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]], Summary]:  # fmt: skip
    """CSP metrics, per-structure rows and the printed summary (``--per-reference`` written)."""
    if all(i is None for i in gen_set.ids):
        fail(
            f"{generated}: no frame carries a material_id info field; CSP pairs frames "
            "with references by it (write frames with `matgen sample --compositions-from`)",
            1,
        )
    if len(set(ref_set.ids)) != len(ref_set.ids):
        fail(f"{reference}: material_id values are not unique", 1)
    res = ev.evaluate_csp(
        gen_set,
        ref_set,
        k=k,
        reference_validity=reference_validity,
        smact_rules=smact_rules,
        fingerprint_check=fingerprint_check,
        workers=workers,
        progress=progress,
    )
    if res.metrics["num_generated_evaluated"] == 0:
        fail(
            f"{generated}: none of the {len(gen_set)} frames has a material_id found in "
            f"{reference}",
            1,
        )
    metrics = res.metrics
    if per_reference is not None:
        _write_csv(per_reference, res.per_reference)
    summary = [
        ("match rate", metrics["match_rate"]),
        ("RMSE", metrics["rmse"]),
        ("k", metrics["k"]),
        ("references", metrics["num_references"]),
        ("generated validity", metrics["generated_validity"]),
    ]
    return metrics, res.per_structure, summary


def _name_unparsable_references(reference: Path, ids: list[str], task: Task) -> None:
    """One line per reference row whose CIF does not parse (stderr)."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    effect = ("counted as an unmatched reference" if task is Task.csp
              else "left out of the reference distributions")
    for mid in ids:
        err.print(f"error: {escape(str(reference))}: {escape(str(mid))}: CIF does not parse "
                  f"({effect})")


def _run_gen(
    ev, gen_set, ref_set, train_set, cfg, property_name: str | None, sun: bool, mlip: str,
    workers: int, progress: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]], Summary]:  # fmt: skip
    """De novo metrics (S.U.N. too with ``sun``), per-structure rows and the summary."""
    try:
        res = ev.evaluate_generation(
            gen_set,
            ref_set,
            train_set,
            cfg,
            property_name=property_name,
            workers=workers,
            progress=progress,
        )
    except KeyError as e:
        fail(str(e.args[0]) if e.args else str(e), 2)
    except ImportError as e:
        fail(str(e), 1)
    metrics, rows = res.metrics, res.per_structure
    if sun:
        metrics["sun"] = _run_sun(ev, gen_set, train_set, rows, cfg.smact_rules, mlip, workers,
                                  progress)  # fmt: skip
    summary = [(key, metrics.get(key)) for key in _GEN_SUMMARY if key in metrics]
    if sun:
        summary += [(f"S.U.N. {t}", metrics["sun"].get(t)) for t in ("sun_rate@0.1", "sun_rate@0")]
    return metrics, rows, summary


def _run_sun(
    ev, gen_set, train_set, rows: list[dict[str, Any]], smact_rules: str, mlip: str,
    workers: int, progress: bool,
) -> dict[str, Any]:  # fmt: skip
    """S.U.N. metrics; its per-structure columns are added to ``rows``."""
    try:
        scorer, name = ev.mlip_scorer(mlip)
    except Exception as e:  # noqa: BLE001 - a missing model is one line, not a traceback
        fail(f"cannot load MLIP {mlip!r}: {e}", 1)
    s = ev.evaluate_sun(
        gen_set,
        scorer,
        train_set,
        scorer_name=name,
        config=ev.GenConfig(coverage=False, smact_rules=smact_rules),
        workers=workers,
        progress=progress,
    )
    for r, extra in zip(rows, s.per_structure):
        for key in _SUN_COLUMNS:
            r[key] = extra.get(key)
    return s.metrics


def _print_summary(summary: Summary) -> None:
    for name, val in summary:
        sval = "n/a" if val is None else (f"{val:.4f}" if isinstance(val, float) else str(val))
        _out.print(f"{name:>22}: {sval}")

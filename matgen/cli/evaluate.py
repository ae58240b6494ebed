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

from matgen.cli._app import app

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)


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


def _fail(msg: str, code: int = 1) -> None:
    _err.print(f"error: {escape(msg)}")
    raise typer.Exit(code)


@app.command("evaluate")
def evaluate(
    task: Annotated[Task, typer.Option(help="csp: match rate / RMSE; gen: de novo metrics.")],
    generated: Annotated[Path, typer.Option(help="Generated frames (extxyz).")],
    reference: Annotated[Path, typer.Option(help="Reference CSV (CDVAE format, cif column).")],
    train: Annotated[Path | None, typer.Option(help="Training CSV, for novelty (gen).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Metrics JSON (default: next to --generated).")
    ] = None,
    per_structure: Annotated[
        Path | None, typer.Option(help="Per-structure CSV (default: next to --generated).")
    ] = None,
    per_reference: Annotated[
        Path | None, typer.Option(help="CSP: also write one row per reference here.")
    ] = None,
    workers: Annotated[int, typer.Option(min=0, help="Worker processes (0: all CPU cores).")] = 0,
    k: Annotated[
        int | None, typer.Option(min=1, help="CSP: use the first K samples per reference.")
    ] = None,
    reference_validity: Annotated[
        RefValidity,
        typer.Option(
            help="CSP: require a valid reference (DiffCSP k=1), ignore it (CDVAE; DiffCSP k>1), "
            "or auto (DiffCSP's choice for this k)."
        ),
    ] = RefValidity.auto,
    smact_rules: Annotated[
        SmactRules,
        typer.Option(
            help="Composition validity: cdvae (the published rule, smact 2.x semantics) or "
            "smact4 (smact 4's smact_validity defaults)."
        ),
    ] = SmactRules.cdvae,
    fingerprint_check: Annotated[
        bool,
        typer.Option(
            help="CSP: a crystal whose CrystalNN fingerprint fails is invalid, as in the "
            "published Crystal class (slow)."
        ),
    ] = False,
    dataset: Annotated[
        str | None,
        typer.Option(help="gen: COV cut-offs of mp20, perov5 or carbon24 (default: from path)."),
    ] = None,
    struc_cutoff: Annotated[float | None, typer.Option(help="gen: COV structure cut-off.")] = None,
    comp_cutoff: Annotated[float | None, typer.Option(help="gen: COV composition cut-off.")] = None,
    coverage: Annotated[
        bool, typer.Option(help="gen: compute COV (CrystalNN fingerprints; slow).")
    ] = True,
    property_name: Annotated[
        str | None,
        typer.Option("--property", help="gen: Wasserstein distance of this frame-info/CSV field."),
    ] = None,
    n_samples: Annotated[
        int | None, typer.Option(help="gen: valid samples drawn for the distributions.")
    ] = None,
    sun: Annotated[
        bool, typer.Option(help="gen: also S.U.N. (MLIP relaxation + hull; slow).")
    ] = False,
    mlip: Annotated[str, typer.Option(help="gen --sun: MLIP name.")] = "chgnet",
    progress: Annotated[bool, typer.Option(
        help="Progress on stderr: a bar on a terminal, a line every 20 s otherwise.")] = True,
) -> None:
    """Evaluate generated crystals: CSP match rate / RMSE, or de novo metrics.

    CSP pairs frames with references by the frames' material_id; several frames per id are
    the k samples (best-of-k). Every metric follows the CDVAE / DiffCSP definitions.
    """
    from matgen import evaluation as ev
    from matgen.cli._paths import output_file_problem

    stem = generated.with_suffix("")
    out = out or Path(f"{stem}.{task.value}_metrics.json")
    per_structure = per_structure or Path(f"{stem}.{task.value}_per_structure.csv")
    for flag, path in (("--out", out), ("--per-structure", per_structure),
                       ("--per-reference", per_reference)):
        why = output_file_problem(path, flag) if path is not None else None
        if why:
            _fail(why, 2)
    nworkers = workers or (os.cpu_count() or 1)
    try:
        gen_set = ev.read_generated(generated)
        ref_set = ev.read_reference_csv(reference)
        train_set = ev.read_reference_csv(train) if train is not None else None
    except ev.EvaluationInputError as e:
        _fail(str(e))
    if len(gen_set) == 0:
        _fail(f"{generated}: no frames")
    if len(ref_set) == 0:
        _fail(f"{reference}: no rows")

    if task is Task.csp:
        if all(i is None for i in gen_set.ids):
            _fail(
                f"{generated}: no frame carries a material_id info field; CSP pairs frames "
                "with references by it (write frames with `matgen sample --compositions-from`)"
            )
        if len(set(ref_set.ids)) != len(ref_set.ids):
            _fail(f"{reference}: material_id values are not unique")
        res = ev.evaluate_csp(
            gen_set,
            ref_set,
            k=k,
            reference_validity=reference_validity.value,
            smact_rules=smact_rules.value,
            fingerprint_check=fingerprint_check,
            workers=nworkers,
            progress=progress,
        )
        if res.metrics["num_generated_evaluated"] == 0:
            _fail(
                f"{generated}: none of the {len(gen_set)} frames has a material_id found in "
                f"{reference}"
            )
        metrics, rows = res.metrics, res.per_structure
        if per_reference is not None:
            _write_csv(per_reference, res.per_reference)
        summary = [
            ("match rate", metrics["match_rate"]),
            ("RMSE", metrics["rmse"]),
            ("k", metrics["k"]),
            ("references", metrics["num_references"]),
            ("generated validity", metrics["generated_validity"]),
        ]
    else:
        ds = dataset or ev.guess_dataset(reference)
        cfg = ev.GenConfig(
            dataset=ds,
            struc_cutoff=struc_cutoff,
            comp_cutoff=comp_cutoff,
            coverage=coverage,
            n_samples=n_samples,
            smact_rules=smact_rules.value,
        )
        try:
            res = ev.evaluate_generation(
                gen_set,
                ref_set,
                train_set,
                cfg,
                property_name=property_name,
                workers=nworkers,
                progress=progress,
            )
        except KeyError as e:
            _fail(str(e.args[0]) if e.args else str(e), code=2)
        except ImportError as e:
            _fail(str(e))
        metrics, rows = res.metrics, res.per_structure
        if sun:
            try:
                scorer, name = ev.mlip_scorer(mlip)
            except Exception as e:  # noqa: BLE001 - a missing model is one line, not a traceback
                _fail(f"cannot load MLIP {mlip!r}: {e}")
            s = ev.evaluate_sun(
                gen_set,
                scorer,
                train_set,
                scorer_name=name,
                config=ev.GenConfig(coverage=False, smact_rules=smact_rules.value),
                workers=nworkers,
                progress=progress,
            )
            metrics["sun"] = s.metrics
            for r, extra in zip(rows, s.per_structure):
                for key in (
                    "e_above_hull_mlip",
                    "rmsd_to_relaxed",
                    "stable@0.1",
                    "stable@0",
                    "sun@0.1",
                    "sun@0",
                ):
                    r[key] = extra.get(key)
        summary = [
            (key, metrics.get(key))
            for key in (
                "valid",
                "comp_valid",
                "struct_valid",
                "cov_recall",
                "cov_precision",
                "wdist_density",
                "wdist_num_elements",
                "wdist_property",
                "uniqueness",
                "novelty",
            )
            if key in metrics
        ]
        if sun:
            summary += [
                (f"S.U.N. {t}", metrics["sun"].get(t)) for t in ("sun_rate@0.1", "sun_rate@0")
            ]

    metrics["generated_file"] = str(generated)
    metrics["reference_file"] = str(reference)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(metrics), indent=2) + "\n")
    _write_csv(per_structure, rows)
    for name, val in summary:
        sval = "n/a" if val is None else (f"{val:.4f}" if isinstance(val, float) else str(val))
        _out.print(f"{name:>22}: {sval}")
    if task is Task.gen and sun:
        _out.print(f"note: {ev.STABILITY_NOTE}")
    _out.print(f"metrics -> {escape(str(out))}; per-structure -> {escape(str(per_structure))}")

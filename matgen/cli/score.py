"""`matgen score`: relax candidates with an MLIP, energy above hull, predicted properties."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from matgen.cli._app import app, fail

_err = Console(stderr=True, highlight=False, soft_wrap=True)
_FRAME = re.compile(r"(?:frame|row) (\d+)")
_ID = re.compile(r"\(([^()]*)\)\s*$")


InOpt = Annotated[Path, typer.Option("--in", help="Candidates (extxyz; also CSV/CIF/folder).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output CSV (written atomically).")]
NoRelaxOpt = Annotated[
    bool, typer.Option("--no-relax", help="Single-point energies of the input structures.")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
BatchSizeOpt = Annotated[
    int, typer.Option("--batch-size", min=1, help="Structures per MLIP forward.")
]
MaxStepsOpt = Annotated[int, typer.Option("--max-steps", min=0, help="FIRE steps per structure.")]
FmaxOpt = Annotated[
    float, typer.Option("--fmax", min=0.0, help="Force convergence threshold, eV/Å.")
]
MlipOpt = Annotated[
    str,
    typer.Option(
        "--mlip",
        help="sevennet (SevenNet-l3i5; default, most accurate), sevennet-0 (SevenNet-0; "
        "faster) or chgnet (CHGNet; fastest, least accurate); each is put on the MP hull's scale "
        "(MP's legacy corrections) before the hull.",
    ),
]
PredictorsOpt = Annotated[
    Path | None,
    typer.Option("--predictors", help="Folder of predictors (default: the shipped ones)."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
RelaxedOutOpt = Annotated[
    Path | None,
    typer.Option(
        "--relaxed-out",
        help="Also write the relaxed structures (extxyz): the "
        "input frame's fields, sample_id, the scores, and the MLIP's total "
        "energy (atoms.get_potential_energy(), eV).",
    ),
]
CifZipOpt = Annotated[
    Path | None,
    typer.Option(
        "--cif-zip",
        help="Also write the relaxed structures as symmetrised CIFs "
        "(sample_id.cif, scores as comments) in this zip.",
    ),
]
OracleOpt = Annotated[
    str | None,
    typer.Option(
        "--oracle",
        help="dft: after MLIP scoring, verify the --top best rows (lowest e_above_hull) with "
        "GPAW DFT (the dft extra) and add dft_* columns.",
    ),
]
TopOpt = Annotated[
    int | None, typer.Option("--top", min=1, help="Rows verified by --oracle (default 3).")
]
DftCacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--dft-cache",
        help="Folder of the DFT calculations (default: OUT's name + .dft_cache beside it); a "
        "second run recomputes nothing.",
    ),
]
DftTimeOpt = Annotated[
    float, typer.Option("--dft-time-limit", min=1.0, help="Seconds per DFT calculation.")
]
ProgressOpt = Annotated[
    bool, typer.Option(help="Progress on stderr: a bar on a terminal, a line every 20 s otherwise.")
]


@app.command("score")
def score(
    inp: InOpt,
    out: OutOpt,
    no_relax: NoRelaxOpt = False,
    device: DeviceOpt = "auto",
    batch_size: BatchSizeOpt = 64,
    max_steps: MaxStepsOpt = 500,
    fmax: FmaxOpt = 0.1,
    mlip: MlipOpt = "sevennet",  # = matgen.surrogates._mlip.DEFAULT_MLIP (tested; no torch here)
    predictors: PredictorsOpt = None,
    seed: SeedOpt = 0,
    relaxed_out: RelaxedOutOpt = None,
    cif_zip: CifZipOpt = None,
    oracle: OracleOpt = None,
    top: TopOpt = None,
    dft_cache: DftCacheOpt = None,
    dft_time_limit: DftTimeOpt = 1800.0,
    progress: ProgressOpt = True,
) -> None:
    """Score structures: energy per atom, formation energy, energy above the MP hull, relax
    status, predicted properties with standard deviations, and an out-of-distribution score.

    The CSV's id column is sample_id; OUT.columns.csv beside it gives each column's unit and
    meaning. Energies are eV/atom. e_form_per_atom and e_above_hull come from the MLIP, on the
    MP hull's scale: MP's legacy corrections (MaterialsProjectCompatibility, as Matbench
    mp_e_form; none for Se, Te, Br, I, Sb; not MP2020); formation_energy_per_atom, band_gap
    (eV) and their _std come from the property predictors. e_above_hull is signed (negative:
    below the MP hull);
    suspect is True more than 0.05 eV/atom below it (the MLIP cannot vouch for that).

    --oracle dft --top K: the K rows with the lowest MLIP e_above_hull are relaxed and computed
    with GPAW (PBE; formation energy and energy above the GPAW hull of the competing phases)
    and get dft_* columns; every stability number gets a judge column (e_above_hull_judge:
    the MLIP, dft_e_above_hull_judge: dft:gpaw-pbe). A failed calculation is a dft_status
    (scf_not_converged, timeout, ...), never a number.

    Malformed or failing structures get a row with the reason in error; the rest are scored.
    Exit code 0 when every input entry could be read, 1 when some could not (the CSV is
    written either way), 2 on usage errors.
    """
    from matgen.crystal import read_crystals
    from matgen.surrogates import RelaxConfig
    from matgen.surrogates._score import ScoreConfig

    _check_usage(inp, out, device, relaxed_out, cif_zip)
    dft = _dft_options(oracle, top, dft_cache, out, dft_time_limit)
    res = read_crystals(inp)
    for e in res.errors:
        _err.print(f"bad entry {escape(str(e))}")
    cfg = ScoreConfig(
        relax=not no_relax,
        relax_config=RelaxConfig(fmax=fmax, max_steps=max_steps, batch_size=batch_size),
        seed=seed,
    )
    rows, model = _score_batch(res, mlip, device, predictors, cfg, progress)
    mlip_name = str(getattr(model, "name", mlip)) if rows else mlip
    if dft is not None:
        from matgen.cli._dft import verify_rows

        with _quiet():  # pymatgen's CIF rounding notes; DFT failures are reported per row
            verify_rows(rows, dft, mlip_name, progress, _err)
    _write_outputs(out, relaxed_out, cif_zip, inp, res, rows, mlip_name)
    n_fail = sum(1 for r in rows if r.get("error"))
    _err.print(
        f"scored {len(rows) - n_fail} of {res.num_entries} entries; "
        f"{len(res.errors)} unreadable, {n_fail} failed in scoring -> {escape(str(out))}"
    )
    for r in rows:
        if r.get("error"):
            _err.print(f"failed {escape(str(r['id']))}: {escape(str(r['error']))}")
    if res.errors or not rows:
        raise typer.Exit(1)


def _check_usage(
    inp: Path, out: Path, device: str, relaxed_out: Path | None, cif_zip: Path | None
) -> None:
    """Bad options and unwritable outputs end the command before any work (exit 2)."""
    from matgen.cli._paths import output_file_problem

    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        fail(f"--device must be auto, cpu or cuda, not {device!r}", 2)
    if not inp.exists():
        fail(f"no such file: {inp}", 2)
    if cif_zip is not None and cif_zip.suffix.lower() != ".zip":
        fail(f"--cif-zip {cif_zip}: give a .zip file name", 2)
    for flag, path in (("--out", out), ("--relaxed-out", relaxed_out), ("--cif-zip", cif_zip)):
        why = output_file_problem(path, flag) if path is not None else None
        if why:
            fail(why, 2)
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda but no CUDA device is available", 2)


def _dft_options(oracle, top, cache, out: Path, time_limit: float):
    """The DFT verification asked for (None without ``--oracle``); bad combinations exit 2."""
    if oracle is None:
        if top is not None or cache is not None:
            fail("--top and --dft-cache go with --oracle dft", 2)
        return None
    if oracle != "dft":
        fail(f"--oracle must be dft, not {oracle!r}", 2)
    from matgen.cli._dft import DFTOptions

    return DFTOptions.build(top or 3, cache or out.with_name(f"{_stem(out)}.dft_cache"), time_limit)


def _score_batch(res, mlip: str, device: str, predictors: Path | None, cfg, progress: bool):
    """Score rows of the readable entries (none when there are none) and the MLIP used."""
    from matgen._progress import Progress
    from matgen.surrogates import load_mlip
    from matgen.surrogates._score import load_default_predictors, score_structures

    batch = res.batch
    if not batch.num_crystals:
        return [], None
    try:
        model = load_mlip(mlip, device=device)
    except (ImportError, ValueError) as exc:
        fail(str(exc), 2)
    preds = (load_default_predictors(predictors) if predictors is not None
             else load_default_predictors())  # fmt: skip
    with Progress("relax" if cfg.relax else "score", total=batch.num_crystals,
                  unit="structures", enabled=progress) as bar, _quiet():  # fmt: skip
        rows = score_structures(batch, mlip=model, predictors=preds, config=cfg,
                                progress=bar.advance)  # fmt: skip
    return rows, model


def _write_outputs(
    out: Path, relaxed_out: Path | None, cif_zip: Path | None, inp: Path, res,
    rows: list[dict], mlip_name: str,
) -> None:  # fmt: skip
    """The score CSV (a row per entry, unreadable ones too, in input order), its column
    dictionary, and the relaxed structures (extxyz, CIF zip) when asked for."""
    from matgen.surrogates._score import (
        columns_of,
        write_relaxed_extxyz,
        write_score_columns,
        write_score_csv,
    )

    all_rows = _rows_in_input_order(res, rows)
    write_score_csv(out, all_rows)
    from matgen.dft._scores import DFT_SCORE_COLUMNS  # no GPAW import: column texts only

    write_score_columns(out.with_name(f"{_stem(out)}.columns.csv"), columns_of(all_rows),
                        mlip_name, DFT_SCORE_COLUMNS)  # fmt: skip
    if relaxed_out is not None:
        with _quiet():
            write_relaxed_extxyz(relaxed_out, rows, _source_info(inp, res), mlip_name)
    if cif_zip is not None:
        with _quiet():
            _write_cif_zip(cif_zip, rows, mlip_name)


def _rows_in_input_order(res, rows: list[dict]) -> list[dict]:
    """The scored rows and a row for each unreadable entry, sorted by input position."""
    order = [_frame_of(e) for e in res.entries] if rows else []
    bad_rows = []
    for e in res.errors:
        m = _ID.search(e.entry)
        bad_rows.append({"id": m.group(1) if m else e.entry, "error": e.reason})
    keyed = list(zip(order, rows, strict=True)) + [
        (_frame_of(e.entry), r) for e, r in zip(res.errors, bad_rows, strict=True)
    ]
    keyed.sort(key=lambda kr: kr[0])
    return [r for _, r in keyed]


def _frame_of(entry: str) -> int:
    m = _FRAME.search(entry)
    return int(m.group(1)) if m else 10**9


def _stem(path: Path) -> str:
    """``scores`` of ``scores.csv`` (``scores.csv.gz`` too)."""
    name = path.name
    for suffix in (".gz", ".csv"):
        name = name.removesuffix(suffix)
    return name or path.name


@contextmanager
def _quiet():
    """Library warnings a user cannot act on (pymatgen CIF rounding, torch/ASE deprecations)
    stay out of normal runs; failures are reported per structure in the CSV."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _source_info(inp: Path, res) -> list[dict]:
    """The input fields of each usable crystal (sampling metadata of ``matgen sample``): an
    extxyz frame's info as written, else the reader's metadata and numeric properties."""
    import math

    infos: list[dict] = []
    if inp.is_file() and any(s in (".extxyz", ".xyz") for s in inp.suffixes):
        try:
            from ase.io import read

            frames = read(str(inp), index=":", format="extxyz")
            for entry in res.entries:
                k = _frame_of(entry)
                infos.append(dict(frames[k - 1].info) if 0 < k <= len(frames) else {})
            return infos
        except Exception:  # noqa: BLE001 - fall back to what the reader kept
            infos = []
    b = res.batch
    for i in range(b.num_crystals):
        d: dict = {k: v[i] for k, v in res.metadata.items() if v[i] != ""}
        for k, t in b.properties.items():
            if math.isfinite(float(t[i])):
                d[k] = float(t[i])
        infos.append(d)
    return infos


def _write_cif_zip(path: Path, rows: list[dict], mlip: str) -> None:
    """The relaxed structures of scored rows as CIFs in a zip, key scores as comments."""
    import math

    from matgen.cli._cifzip import write_cif_zip
    from matgen.surrogates._score import relaxed_structures

    def items():
        for row, s in zip(rows, relaxed_structures(rows), strict=True):
            if s is None:
                continue
            head = f"matgen score: sample_id {row['id']} ({row.get('formula', '')})"
            notes = [f"{head}, relaxed with {mlip}"]
            for k in ("energy_per_atom", "e_form_per_atom", "e_above_hull"):
                v = row.get(k)
                if isinstance(v, float) and math.isfinite(v):
                    notes.append(f"{k} = {v:.4f} eV/atom ({mlip})")
            yield row["id"], s, notes

    write_cif_zip(path, items())

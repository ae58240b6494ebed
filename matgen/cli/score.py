"""`matgen score`: relax candidates with an MLIP, energy above hull, predicted properties."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from matgen.cli._app import app

_err = Console(stderr=True, highlight=False, soft_wrap=True)
_FRAME = re.compile(r"(?:frame|row) (\d+)")
_ID = re.compile(r"\(([^()]*)\)\s*$")


@app.command("score")
def score(
    inp: Annotated[Path, typer.Option("--in", help="Candidates (extxyz; also CSV/CIF/folder).")],
    out: Annotated[Path, typer.Option("--out", help="Output CSV (written atomically).")],
    no_relax: Annotated[
        bool, typer.Option("--no-relax", help="Single-point energies of the input structures.")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Structures per MLIP forward.")
    ] = 64,
    max_steps: Annotated[
        int, typer.Option("--max-steps", min=0, help="FIRE steps per structure.")
    ] = 500,
    fmax: Annotated[
        float, typer.Option("--fmax", min=0.0, help="Force convergence threshold, eV/Å.")
    ] = 0.1,
    mlip: Annotated[str, typer.Option(
        "--mlip",
        help="sevennet (SevenNet-0, MP2020-corrected; default) or chgnet (4-6x faster on CPU).")
    ] = "sevennet",  # = matgen.surrogates._mlip.DEFAULT_MLIP (tested; no torch import here)
    predictors: Annotated[
        Path | None,
        typer.Option("--predictors", help="Folder of predictors (default: the shipped ones)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    relaxed_out: Annotated[
        Path | None,
        typer.Option("--relaxed-out", help="Also write the relaxed structures (extxyz)."),
    ] = None,
) -> None:
    """Score structures: energy per atom, formation energy, energy above the MP hull, relax
    status, predicted properties with standard deviations, and an out-of-distribution score.

    e_above_hull is signed (eV/atom above the MP reference hull; negative: below it);
    `suspect` is True more than 0.05 eV/atom below it (the MLIP cannot vouch for that).
    Malformed or failing structures get a row with the reason in `error`; the rest are scored.
    Exit code 0 when every input entry could be read, 1 when some could not (the CSV is written
    either way), 2 on usage errors.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from matgen.crystal import read_crystals
    from matgen.surrogates import RelaxConfig, load_mlip
    from matgen.surrogates._score import (
        ScoreConfig,
        load_default_predictors,
        score_structures,
        write_relaxed_extxyz,
        write_score_csv,
    )

    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        _err.print(f"error: --device must be auto, cpu or cuda, not {escape(device)!r}")
        raise typer.Exit(2)
    if not inp.exists():
        _err.print(f"error: no such file: {escape(str(inp))}")
        raise typer.Exit(2)
    from matgen.cli._paths import output_file_problem

    for flag, path in (("--out", out), ("--relaxed-out", relaxed_out)):
        why = output_file_problem(path, flag) if path is not None else None
        if why:
            _err.print(f"error: {escape(why)}")
            raise typer.Exit(2)
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            _err.print("error: --device cuda but no CUDA device is available")
            raise typer.Exit(2)
    res = read_crystals(inp)
    for e in res.errors:
        _err.print(f"bad entry {escape(str(e))}")
    batch = res.batch
    rows = []
    if batch.num_crystals:
        try:
            model = load_mlip(mlip, device=device)
        except (ImportError, ValueError) as exc:
            _err.print(f"error: {escape(str(exc))}")
            raise typer.Exit(2) from None
        preds = (load_default_predictors(predictors) if predictors is not None
                 else load_default_predictors())
        cfg = ScoreConfig(
            relax=not no_relax,
            relax_config=RelaxConfig(fmax=fmax, max_steps=max_steps, batch_size=batch_size),
            seed=seed,
        )
        bar = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=_err, transient=True,
        )
        with bar:
            task = bar.add_task("relaxing" if not no_relax else "scoring",
                                total=batch.num_crystals)
            rows = score_structures(
                batch, mlip=model, predictors=preds, config=cfg,
                progress=lambda n: bar.advance(task, n),
            )
        order = [_frame_of(e) for e in res.entries]
    else:
        order = []
    # failed entries get a row too, in input order
    bad_rows = []
    for e in res.errors:
        m = _ID.search(e.entry)
        bad_rows.append({"id": m.group(1) if m else e.entry, "error": e.reason})
    keyed = list(zip(order, rows, strict=True)) + [
        (_frame_of(e.entry), r) for e, r in zip(res.errors, bad_rows, strict=True)
    ]
    keyed.sort(key=lambda kr: kr[0])
    all_rows = [r for _, r in keyed]
    write_score_csv(out, all_rows)
    if relaxed_out is not None:
        write_relaxed_extxyz(relaxed_out, rows)
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


def _frame_of(entry: str) -> int:
    m = _FRAME.search(entry)
    return int(m.group(1)) if m else 10**9

"""`matgen data` commands: validate and info (thin wrappers over matgen.crystal / matgen.data)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from matgen.cli._app import MatgenTyper, app, fail

data_app = MatgenTyper(
    help="Check and inspect crystal data (CDVAE CSV, CIF, folder of CIFs, extxyz).",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)


def _progress():
    """A rich progress bar on stderr and a ``(done, total)`` callback driving it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err,
        transient=True,
        auto_refresh=False,  # no refresh thread: the parsing pool may then use fork
    )
    task = bar.add_task("checking", total=None)

    def cb(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total, refresh=True)

    return bar, cb


@data_app.command("validate")
def validate(
    path: Annotated[
        Path,
        typer.Argument(
            help="CSV (column cif), CIF, folder or extxyz; or a dataset name (mp20, ...)."
        ),
    ],
    max_atoms: Annotated[
        int | None, typer.Option("--max-atoms", min=1, help="Flag cells with more atoms.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write bad entries to this CSV.")
    ] = None,
    min_distance: Annotated[
        float,
        typer.Option("--min-distance", min=0.0, help="Closest allowed atom pair in Å."),
    ] = 0.5,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Parsing processes.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the counts.")] = False,
    split: Annotated[
        str, typer.Option("--split", help="Split, when PATH is a dataset name.")
    ] = "train",
) -> None:
    """Check every entry; print good/bad counts and one line per bad entry.

    Exit code 0 if all entries are usable, 1 if any is bad, 2 on a usage error.
    NaN property labels count as bad here (loaders keep them as missing labels).
    """
    from matgen.crystal import validate_crystals

    if not path.exists():
        from matgen.data import REGISTRY, DatasetNotFound, resolve_source

        key = str(path).lower().replace("-", "").replace("_", "")
        if key not in REGISTRY:
            fail(f"no such file or folder: {path}", 2)
        try:
            path = resolve_source(key, split, allow_download=False)
        except DatasetNotFound as exc:
            fail(str(exc), 2)
    try:
        bar, cb = _progress()
        with bar:
            result = validate_crystals(
                path,
                max_atoms=max_atoms,
                min_distance=min_distance,
                workers=workers,
                progress=cb,
            )
    except Exception as exc:  # noqa: BLE001 - never a traceback for bad data
        _out.print(
            f"{escape(str(path))}: cannot be read: {escape(type(exc).__name__)}: "
            f"{escape(str(exc).splitlines()[0] if str(exc) else '')}"
        )
        _out.print("good: 0  bad: 1")
        raise typer.Exit(1) from None
    good, bad = result.num_good, result.num_bad
    style = "green" if bad == 0 else "red"
    _out.print(
        f"[bold]{escape(str(path))}[/bold]: {result.num_entries} entries, "
        f"[green]good: {good}[/green]  [{style}]bad: {bad}[/{style}]"
    )
    if result.ignored_files:
        _out.print(f"ignored {len(result.ignored_files)} file(s) of other types")
    if not quiet:
        for e in result.errors:
            _out.print(f"  [red]bad[/red] {escape(e.entry)}: {escape(e.reason)}")
    if report is not None:
        try:
            report.parent.mkdir(parents=True, exist_ok=True)
            with open(report, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["entry", "reason"])
                for e in result.errors:
                    w.writerow([e.entry, e.reason])
            _out.print(f"wrote {bad} bad entries to {escape(str(report))}")
        except OSError as exc:
            fail(f"cannot write report {report}: {exc.strerror}", 2)
    raise typer.Exit(1 if bad else 0)


@data_app.command("info")
def info(
    name_or_path: Annotated[str, typer.Argument(help="mp20, perov5, carbon24, mpts52 or a path.")],
    split: Annotated[str, typer.Option("--split", help="train, val or test.")] = "train",
    max_atoms: Annotated[int | None, typer.Option(
        "--max-atoms", min=1, help="Leave out cells with more atoms (as training does).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Ignore the processed cache.")
    ] = False,
) -> None:
    """Counts, elements, atoms-per-cell histogram and property statistics of a dataset."""
    from matgen.data import DatasetNotFound, DownloadError, load_dataset

    notes: list[str] = []

    class _Notes(logging.Handler):  # resolution notes (split fallback, download) for the user
        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            if not msg.startswith(("  ", "ignoring")) and "skipped" not in msg:
                notes.append(msg)

    logger = logging.getLogger("matgen.data")
    handler, old_level, old_propagate = _Notes(logging.INFO), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        bar, cb = _progress()
        with bar:
            ds = load_dataset(
                name_or_path, split, max_atoms=max_atoms, cache=not no_cache, progress=cb
            )
    except (DatasetNotFound, ValueError) as exc:
        fail(str(exc), 2)
    except DownloadError as exc:
        fail(str(exc), 1)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
    for n in notes:
        _err.print(f"note: {escape(n)}")
    st = ds.stats()
    if as_json:
        out = {
            "source": ds.source,
            "sha256": ds.sha256,
            "entries": ds.num_entries,
            "skipped": len(ds.errors),
            "crystals": st.num_crystals,
            "atoms": st.num_atoms_total,
            "atoms_per_cell": st.atoms_per_cell,
            "elements": st.elements,
            "volume_per_atom_mean": st.volume_per_atom_mean,
            "volume_per_atom_std": st.volume_per_atom_std,
            "properties": st.properties,
            "missing_labels": ds.nan_labels,
        }
        print(json.dumps(out, indent=1))
        raise typer.Exit(0)
    _out.print(f"[bold]{escape(ds.source)}[/bold] (sha256 {ds.sha256[:12]})")
    _out.print(
        f"entries: {ds.num_entries}  crystals: {st.num_crystals}  skipped: {len(ds.errors)}  "
        f"atoms: {st.num_atoms_total}"
    )
    _out.print(f"volume per atom: {st.volume_per_atom_mean:.2f} ± {st.volume_per_atom_std:.2f} Å^3")
    _out.print(
        f"elements ({len(st.elements)}): "
        + ", ".join(f"{k} {v}" for k, v in list(st.elements.items())[:30])
        + (" ..." if len(st.elements) > 30 else "")
    )
    hist = Table(title="atoms per cell", show_header=True)
    hist.add_column("atoms", justify="right")
    hist.add_column("crystals", justify="right")
    hist.add_column("")
    peak = max(st.atoms_per_cell.values(), default=1)
    for n, c in st.atoms_per_cell.items():
        hist.add_row(str(n), str(c), "#" * max(1, round(40 * c / peak)))
    _out.print(hist)
    if st.properties:
        t = Table(title="properties", show_header=True)
        for col in ("name", "mean", "std", "min", "max", "count", "missing"):
            t.add_column(col, justify="right" if col != "name" else "left")
        for k, s in st.properties.items():
            t.add_row(
                escape(k),
                *(f"{s[c]:.4g}" for c in ("mean", "std", "min", "max")),
                str(s["count"]),
                str(s["missing"]),
            )
        _out.print(t)
    for e in ds.errors[:20]:
        _out.print(f"  skipped {escape(e.entry)}: {escape(e.reason)}")
    if len(ds.errors) > 20:
        _out.print(f"  ... {len(ds.errors) - 20} more skipped")

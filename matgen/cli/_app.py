"""The root Typer application; each command module registers its commands on it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="matgen",
    help="matgen: generate crystals with an equivariant diffusion model, score them, "
    "and run closed-loop discovery campaigns.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print matgen's version and the versions of its key libraries."""
    import importlib.metadata as md

    for pkg in ("matgen", "torch", "e3nn", "pymatgen", "botorch", "prefect", "chgnet"):
        try:
            print(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"{pkg} (not installed)")

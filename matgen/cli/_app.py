"""The root Typer application; each command module registers its commands on it."""

from __future__ import annotations

import sys

import typer


class _App(typer.Typer):
    """The Typer app, turning a damaged checkpoint anywhere below a command (``sample``,
    ``train --init``/``--resume``, ``campaign run``) into one line and exit 1 (bad data)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            ckpt = sys.modules.get("matgen.models._checkpoint")  # not loaded: not raised
            if ckpt is not None and isinstance(exc, ckpt.CheckpointError):
                typer.echo(f"error: {exc}", err=True)
                raise SystemExit(1) from None
            raise


app = _App(
    name="matgen",
    help="matgen: generate crystals with an equivariant diffusion model, score them, "
    "and run closed-loop discovery campaigns.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # plain help: at 80 columns the rich panels cut option names and squeeze descriptions
    rich_markup_mode=None,
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


def _print_version(value: bool) -> None:
    if value:
        import importlib.metadata as md

        try:
            print(f"matgen {md.version('matgen')}")
        except md.PackageNotFoundError:
            print("matgen (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True,
        help="Print matgen's version and exit (matgen version lists the libraries too)."),
) -> None:
    """matgen: generate crystals with an equivariant diffusion model, score them, and run
    closed-loop discovery campaigns."""

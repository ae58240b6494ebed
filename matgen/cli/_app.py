"""The root Typer application; each command module registers its commands on it.

Errors meant for the user end a command here, in one place: :func:`fail` prints one line
and exits; a :class:`~matgen._errors.MatgenError` (or a damaged checkpoint) raised anywhere
below a command becomes ``error: <message>`` and the exit code of its kind
(:func:`exit_code`: 2 bad usage, 1 bad data).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import typer

from matgen._errors import DataError, MatgenError, UserError

#: Exit code of each kind of error, the first kind that matches (any other MatgenError: 1).
#: Bad data wins: a family of usage errors may have a bad-data member (a bad input CSV)
#: that subclasses both.
EXIT_CODES: tuple[tuple[type[MatgenError], int], ...] = ((DataError, 1), (UserError, 2))


def fail(msg: str, code: int) -> NoReturn:
    """Print ``error: msg`` on stderr and end the command with ``code`` (2 bad usage, 1 bad
    data or a failed check)."""
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def exit_code(exc: BaseException) -> int | None:
    """The exit code of an error meant for the user, or None for any other exception.

    :class:`UserError` 2, :class:`DataError` and any other :class:`MatgenError` 1; a damaged
    checkpoint (``matgen.models.CheckpointError``, only when that module is loaded) 1.
    """
    if isinstance(exc, MatgenError):
        return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), 1)
    ckpt = sys.modules.get("matgen.models._checkpoint")  # not loaded: not raised
    if ckpt is not None and isinstance(exc, ckpt.CheckpointError):
        return 1
    return None


def _guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with the errors meant for the user turned into one line and an exit code."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as exc:
            code = exit_code(exc)
            if code is None:
                raise
            fail(str(exc), code)

    return run


class MatgenTyper(typer.Typer):
    """A Typer whose commands end with :func:`fail` on errors meant for the user (also under
    ``typer.testing.CliRunner``, which calls the commands without :meth:`_App.__call__`)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        register = super().command(*args, **kwargs)

        def decorator(f: Callable[..., Any]) -> Callable[..., Any]:
            register(_guarded(f))
            return f

        return decorator


class _App(MatgenTyper):
    """The root app; also turns a user error raised outside a command (a damaged checkpoint
    met by a callback) into one line."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            code = exit_code(exc)
            if code is None:
                raise
            typer.echo(f"error: {exc}", err=True)
            raise SystemExit(code) from None


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
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print matgen's version and exit (matgen version lists the libraries too).",
    ),
) -> None:
    """matgen: generate crystals with an equivariant diffusion model, score them, and run
    closed-loop discovery campaigns."""

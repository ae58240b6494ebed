"""Every command's help reads at 80 columns: nothing cut, no RST markup, every option said."""

from __future__ import annotations

import typer.main
from typer.testing import CliRunner

from matgen.cli import app


def _commands(c, path: list[str]):
    if hasattr(c, "commands"):  # a group (typer's own click classes: no isinstance)
        yield path, c
        for name, sub in c.commands.items():
            yield from _commands(sub, [*path, name])
    else:
        yield path, c


def test_every_help_fits_80_columns_and_describes_every_option():
    root = typer.main.get_command(app)
    runner = CliRunner()
    seen = 0
    for path, cmd in _commands(root, []):
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
        where = " ".join(["matgen", *path])
        assert res.exit_code == 0, where
        assert all(len(line) <= 80 for line in res.output.splitlines()), where
        for bad in ("…", "`", "DESIGN.md"):
            assert bad not in res.output, f"{where} --help shows {bad!r}"
        for p in cmd.params:
            if p.param_type_name == "option" and p.name != "help":
                assert p.help, f"{where} {p.opts[0]} has no description"
        seen += 1
    assert seen >= 14  # root, data (2), train, sample, evaluate, score, version, campaign (5)

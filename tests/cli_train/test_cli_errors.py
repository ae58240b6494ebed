"""Errors meant for the user end a command in one place (matgen.cli._app): one line and the
exit code of their kind (2 bad usage, 1 bad data), under CliRunner as on a console."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from matgen._errors import DataError, MatgenError, UserError
from matgen.cli._app import MatgenTyper, exit_code


@pytest.mark.parametrize(
    ("exc", "code"),
    [(UserError("x"), 2), (DataError("x"), 1), (MatgenError("x"), 1), (ValueError("x"), None)],
)
def test_exit_code_of_each_kind(exc, code):
    assert exit_code(exc) == code


def test_a_bad_data_member_of_a_usage_error_family_is_bad_data():
    class BadInput(UserError, ValueError):
        pass

    class BadInputFile(BadInput, DataError):
        pass

    assert exit_code(BadInput("x")) == 2
    assert exit_code(BadInputFile("x")) == 1


def test_evaluation_input_error_is_bad_data():
    from matgen.evaluation import EvaluationInputError

    assert exit_code(EvaluationInputError("f.csv: row 2: no cif")) == 1


@pytest.mark.parametrize(("kind", "code"), [(UserError, 2), (DataError, 1)])
def test_a_command_raising_one_prints_one_line_and_exits_with_its_code(kind, code):
    app = MatgenTyper()

    @app.command()
    def boom(n: int = 1) -> None:
        raise kind(f"bad thing {n}")

    @app.command()
    def other() -> None:  # two commands: boom is a sub-command, as in matgen
        raise typer.Exit(0)

    res = CliRunner().invoke(app, ["boom", "--n", "3"])
    assert res.exit_code == code
    assert res.output.strip().splitlines() == ["error: bad thing 3"]


def test_other_exceptions_pass_through():
    app = MatgenTyper()

    @app.command()
    def boom() -> None:
        raise RuntimeError("a bug")

    @app.command()
    def other() -> None:
        pass

    res = CliRunner().invoke(app, ["boom"])
    assert isinstance(res.exception, RuntimeError)


def test_evaluate_bad_reference_csv_exits_1(tmp_path):
    from matgen.cli import app

    gen = tmp_path / "gen.extxyz"
    gen.write_text("1\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3 "
                   "pbc=\"T T T\" material_id=a\nNa 0 0 0\n")  # fmt: skip
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    res = CliRunner().invoke(app, ["evaluate", "--task", "csp", "--generated", str(gen),
                                   "--reference", str(empty), "--no-progress"])  # fmt: skip
    assert res.exit_code == 1, res.output
    assert res.output.startswith("error: ")

"""The base of matgen's errors meant for the user (standard library only; any layer may use it).

A :class:`MatgenError` carries one line for the user, no traceback. Its two kinds say whose
fix it is: :class:`UserError`, the command was asked for something it cannot do (options,
arguments, a file named that does not exist); :class:`DataError`, the input data themselves
are bad (unreadable, malformed, damaged). The command line maps them to exit codes in one
place (``matgen.cli._app``: 2 bad usage, 1 bad data).
"""

from __future__ import annotations


class MatgenError(Exception):
    """An error meant for the user: its message is one line naming what is wrong."""


class UserError(MatgenError):
    """Bad usage: an option, argument or named file the command cannot work with."""


class DataError(MatgenError):
    """Bad data: input that cannot be read or does not hold what it must."""

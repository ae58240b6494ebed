"""The one process pool (standard library only; any layer may use it).

Start method: ``fork`` is cheapest (the parent's imports are inherited) but unsafe once other
threads exist (a forked child can inherit a lock another thread held), so it is used only while
the process has a single thread; otherwise ``forkserver`` (or ``spawn`` where that is missing).
``fresh=True`` always spawns: for long-lived pools whose workers import torch or other libraries
that keep threads of their own.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def start_method(fresh: bool = False) -> str:
    """The start method :func:`process_pool` uses now (see the module)."""
    methods = mp.get_all_start_methods()
    if fresh:
        return "spawn"
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def process_pool(
    workers: int,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
    fresh: bool = False,
) -> ProcessPoolExecutor:
    """A :class:`ProcessPoolExecutor` of ``workers`` processes with the start method of
    :func:`start_method`."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context(start_method(fresh)),
        initializer=initializer,
        initargs=initargs,
    )

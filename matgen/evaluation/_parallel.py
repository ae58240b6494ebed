"""Process-parallel map with progress (StructureMatcher and CrystalNN are slow)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from matgen._pool import process_pool

T = TypeVar("T")
R = TypeVar("R")


def _init_worker() -> None:
    # One BLAS/OpenMP thread per worker process: the parallelism is across processes.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import warnings

    warnings.filterwarnings("ignore")


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int = 1,
    chunksize: int | None = None,
    progress: bool = True,
    desc: str = "",
) -> list[R]:
    """``[fn(x) for x in items]``, in ``workers`` processes, order kept.

    Args:
        fn: a picklable (module-level) function.
        items: picklable work items.
        workers: number of processes; ``<= 1`` runs in this process.
        chunksize: items per task sent to a worker (default: about 4 chunks per worker).
        progress: show progress on stderr (:class:`matgen._progress.Progress`: a bar on a
            terminal, plain periodic lines otherwise).
        desc: bar label.
    """
    from matgen._progress import Progress

    n = len(items)
    out: list[Any] = []
    if workers <= 1 or n <= 1:
        import warnings

        with Progress(desc or "work", total=n, enabled=progress and n > 0, unit="items") as bar, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for x in items:
                out.append(fn(x))
                bar.advance()
        return out
    if chunksize is None:
        chunksize = max(1, min(64, n // (workers * 8) or 1))
    with process_pool(workers, initializer=_init_worker) as ex:
        # map submits everything now, so the workers exist (forked) before the progress
        # thread starts: a fork never copies a lock that thread holds
        results = ex.map(fn, items, chunksize=chunksize)
        with Progress(desc or "work", total=n, enabled=progress, unit="items") as bar:
            for r in results:
                out.append(r)
                bar.advance()
    return out


def chunked(items: Iterable[T], size: int) -> list[list[T]]:
    """Split ``items`` into lists of at most ``size``."""
    buf: list[T] = []
    out: list[list[T]] = []
    for x in items:
        buf.append(x)
        if len(buf) == size:
            out.append(buf)
            buf = []
    if buf:
        out.append(buf)
    return out

"""Process-parallel map with a progress bar (StructureMatcher and CrystalNN are slow)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

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
        progress: show a tqdm bar on stderr.
        desc: bar label.
    """
    from tqdm.auto import tqdm

    n = len(items)
    bar = tqdm(total=n, desc=desc, disable=not progress, file=sys.stderr, dynamic_ncols=True)
    out: list[Any] = []
    try:
        if workers <= 1 or n <= 1:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for x in items:
                    out.append(fn(x))
                    bar.update(1)
            return out
        if chunksize is None:
            chunksize = max(1, min(64, n // (workers * 8) or 1))
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as ex:
            for r in ex.map(fn, items, chunksize=chunksize):
                out.append(r)
                bar.update(1)
        return out
    finally:
        bar.close()


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

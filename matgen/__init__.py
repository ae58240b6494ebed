"""matgen: equivariant crystal diffusion and closed-loop discovery.

Notebook API (loaded on first use, so ``import matgen`` imports no torch)::

    import matgen
    structures = matgen.sample(num=8)                      # pymatgen Structures
    scored = matgen.score(structures, relax=False)         # properties: e_above_hull, ...

``matgen.sample`` defaults to the shipped model and its default sampler (``auto``: 50 Euler
steps for a flow model); see :func:`matgen._api.sample` and :func:`matgen._api.score`. The layers (``matgen.crystal``,
``matgen.generate``, ``matgen.training``, ...) are imported as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "sample", "score"]

if TYPE_CHECKING:  # pragma: no cover
    from matgen._api import sample, score


def __getattr__(name: str) -> Any:
    if name in ("sample", "score"):
        from matgen import _api

        return getattr(_api, name)
    raise AttributeError(f"module 'matgen' has no attribute {name!r}")

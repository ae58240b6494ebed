"""The notebook API: ``matgen.sample`` and ``matgen.score`` (pymatgen structures in and out).

Loaded on first use of ``matgen.sample`` / ``matgen.score`` (``import matgen`` stays light).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matgen.generate import sample_structures

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

    from matgen.surrogates import MLIP


def sample(num: int = 1, checkpoint: str | Path | None = None, *,
           out: str | Path | None = None, progress: bool = False,
           **options: Any) -> list[Structure]:
    """Generate crystals; returns pymatgen ``Structure`` objects (``out``: also an extxyz file).

    Defaults: the shipped model, de novo, seed 0, and the sampler ``matgen sample`` picks
    (``auto``: 50 Euler steps of the ODE for a flow-matching model such as the shipped one, for CSP
    the checkpoint's ``diffusion.csp_fast_steps`` where set (the shipped one: 200);
    for a score model the 1000-step predictor-corrector, or fast 50 steps on CPU). ``options`` are the fields of
    :class:`matgen.generate.SampleSpec`: ``task``, ``compositions``, ``compositions_from``,
    ``formula_units``, ``chemsys``, ``conditions``, ``guidance``, ``steps``, ``sampler``,
    ``seed``, ``batch_size``, ``device``, ``denovo`` (``composition``: the checkpoint's
    composition model draws the atoms, the shipped model's default; ``joint``: the denoiser
    does), ``composition_temperature``, ``consensus`` (CSP: each answer chosen from K samples,
    with ``consensus_votes`` in its properties), ``select_by`` (``votes`` or an MLIP name: the
    sample of lowest single-point energy). Each structure's ``properties`` hold
    ``sample_id``, ``checkpoint``, ``sampler``, ``steps``, ``seed``, ``target_<name>``, ...

    Example::

        import matgen
        structures = matgen.sample(num=8, compositions=["LiFePO4"], steps=200)
    """
    energies = None
    if options.get("select_by", "votes") != "votes":
        from matgen.surrogates import energy_function

        energies = energy_function(options["select_by"], options.get("device", "auto"))
    return sample_structures(num, checkpoint, out=out, progress=progress, log=None,
                             energies=energies, **options)


def score(
    structures: Sequence[Structure] | str | Path,
    *,
    relax: bool = True,
    mlip: str | MLIP = "chgnet",
    device: str = "auto",
    predictors: Sequence[Any] | None = None,
    fmax: float = 0.1,
    max_steps: int = 500,
    batch_size: int = 64,
    seed: int = 0,
    out: str | Path | None = None,
) -> list[Structure]:
    """Relax and score structures as ``matgen score`` does; returns one ``Structure`` per input.

    Each returned structure is the relaxed one (the input with ``relax=False`` or when
    scoring failed) with the score row in ``properties``: ``energy_per_atom``,
    ``e_form_per_atom``, ``e_above_hull`` (signed, eV/atom above the MP hull), ``converged``,
    predicted properties with ``_std``, ``ood_score`` and ``error`` (empty when scored).

    Args:
        structures: pymatgen structures, or a file / folder ``matgen.crystal.read_crystals``
            reads (unreadable entries are skipped with a warning).
        relax: relax with the MLIP first (else single-point energies).
        mlip: ``sevennet`` (SevenNet-l3i5), ``sevennet-0`` (SevenNet-0), ``chgnet`` or an MLIP
            object.
        device: ``auto``, ``cpu`` or ``cuda``.
        predictors: property predictors (default: the shipped ones; ``[]``: none).
        fmax, max_steps, batch_size: the batched FIRE relaxation's settings.
        seed: seeds Python, NumPy and torch before scoring.
        out: also write the scores as CSV here.
    """
    from matgen.surrogates import (
        RelaxConfig,
        ScoreConfig,
        load_default_predictors,
        load_mlip,
        score_structures,
        write_score_csv,
    )

    if isinstance(structures, (str, Path)):
        structures = _read(Path(structures))
    structures = list(structures)
    model = load_mlip(mlip, device=device) if isinstance(mlip, str) else mlip
    cfg = ScoreConfig(relax=relax, seed=seed, relax_config=RelaxConfig(
        fmax=fmax, max_steps=max_steps, batch_size=batch_size))
    ids = [str((s.properties or {}).get("material_id", i)) for i, s in enumerate(structures)]
    rows = score_structures(structures, ids, mlip=model, config=cfg,
                            predictors=load_default_predictors() if predictors is None
                            else predictors)
    if out is not None:
        write_score_csv(out, rows)
    return [_scored(s, row) for s, row in zip(structures, rows, strict=True)]


def _read(path: Path) -> list[Structure]:
    from matgen.crystal import read_crystals

    res = read_crystals(path)
    for e in res.errors:
        warnings.warn(f"skipped {e}", stacklevel=3)
    return res.batch.to_structures()


def _scored(structure: Structure, row: dict[str, Any]) -> Structure:
    from pymatgen.core import Structure

    cif = row.get("relaxed_cif")
    out = Structure.from_str(cif, fmt="cif") if cif else structure.copy()
    out.properties = {**(structure.properties or {}),
                      **{k: v for k, v in row.items() if k != "relaxed_cif"}}
    return out

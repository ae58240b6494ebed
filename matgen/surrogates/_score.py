"""Score candidates: MLIP relaxation -> energies -> energy above hull -> predicted properties."""

from __future__ import annotations

import csv
import io
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from matgen.surrogates._hull import ConvexHull, atomic_write_text
from matgen.surrogates._predictor import PropertyPredictor
from matgen.surrogates._relax import RelaxConfig, relax

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

    from matgen.crystal import CrystalBatch
    from matgen.surrogates._mlip import MLIP

PREDICTOR_DIR = Path(__file__).resolve().parents[1] / "assets" / "predictors"

#: The fixed leading columns of a score table.
BASE_COLUMNS = (
    "id", "formula", "num_atoms", "energy_per_atom", "e_form_per_atom", "e_above_hull",
    "converged", "relax_steps", "max_force",
)


@dataclass(frozen=True)
class ScoreConfig:
    """Settings of :func:`score_structures`.

    Attributes:
        relax: relax with the MLIP first (else a single-point energy of the input).
        relax_config: :class:`RelaxConfig` of the batched relaxation.
        seed: seeds Python, NumPy and torch before scoring.
    """

    relax: bool = True
    relax_config: RelaxConfig = field(default_factory=RelaxConfig)
    seed: int = 0


def load_default_predictors(folder: str | Path | None = None) -> list[PropertyPredictor]:
    """The predictors shipped in ``matgen/assets/predictors`` (one sub-folder per label)."""
    root = Path(folder) if folder is not None else PREDICTOR_DIR
    if not root.exists():
        return []
    return [
        PropertyPredictor.load(p.parent) for p in sorted(root.glob("*/predictor.json"))
    ]


def score_structures(
    structures: Sequence[Structure] | CrystalBatch,
    ids: Sequence[str] | None = None,
    *,
    mlip: MLIP | None = None,
    hull: ConvexHull | None = None,
    predictors: Sequence[PropertyPredictor] | None = None,
    config: ScoreConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Score candidates.

    Args:
        structures: B pymatgen structures or a ``CrystalBatch`` (its ids are used).
        ids: B names (default: the batch's ids, else ``"0".."B-1"``).
        mlip: the potential (default CHGNet on ``auto`` device).
        hull: the reference hull (default :meth:`ConvexHull.from_mp`).
        predictors: property predictors (default :func:`load_default_predictors`).
        config: :class:`ScoreConfig`.
        progress: called with the number of structures finished by the relaxation.

    Returns:
        One dict per structure, in input order, with the :data:`BASE_COLUMNS`, for every
        predictor ``<label>``, ``<label>_std`` (calibrated) and ``<label>_disagreement``
        (ensemble spread), ``ood_score`` (mean over predictors, in [0, 1]) and ``error``
        (empty, or why the structure could not be scored; its other values are then NaN).
    """
    cfg = config or ScoreConfig()
    _seed_everything(cfg.seed)
    if hasattr(structures, "to_structures"):
        ids = list(ids) if ids is not None else list(structures.ids)
        structures = structures.to_structures()
    structures = list(structures)
    ids = [str(i) for i in (ids if ids is not None else range(len(structures)))]
    if mlip is None:
        from matgen.surrogates._mlip import CHGNetMLIP

        mlip = CHGNetMLIP()
    hull = hull if hull is not None else ConvexHull.from_mp()
    predictors = list(predictors) if predictors is not None else load_default_predictors()
    rcfg = cfg.relax_config
    if not cfg.relax:
        rcfg = RelaxConfig(**{**rcfg.__dict__, "max_steps": 0})
    results = relax(structures, mlip, rcfg, ids=ids, progress=progress)
    rows: list[dict[str, Any]] = []
    final: list[Structure] = []
    for s, r in zip(structures, results, strict=True):
        e = r.energy_per_atom
        comp = s.composition
        row: dict[str, Any] = {
            "id": r.id,
            "formula": comp.reduced_formula,
            "num_atoms": len(s),
            "energy_per_atom": e,
            "e_form_per_atom": math.nan,
            "e_above_hull": math.nan,
            "converged": r.converged,
            "relax_steps": r.steps,
            "max_force": r.max_force,
            "error": r.error or "",
        }
        if r.error is None:
            row["e_form_per_atom"] = hull.e_form_per_atom(comp, e)
            try:
                row["e_above_hull"] = hull.e_above_hull(comp, e)
            except Exception as exc:  # noqa: BLE001 - a hull failure is per structure
                row["error"] = f"hull failed: {exc}"
            if not math.isfinite(row["e_form_per_atom"]):
                missing = [el.symbol for el in comp.elements
                           if el.symbol not in hull.elemental_energies]
                row["error"] = f"no hull reference for {', '.join(missing)}"
        rows.append(row)
        final.append(r.structure if r.structure is not None and r.error is None else s)
    if predictors:
        from matgen.surrogates._features import featurize

        feats_by_cfg: dict[Any, torch.Tensor] = {}
        oods = []
        for p in predictors:
            key = tuple(sorted(p.featurizer.to_dict().items()))
            if key not in feats_by_cfg:
                feats_by_cfg[key] = featurize(final, p.featurizer)
            pr = p.predict_features(feats_by_cfg[key])
            for i, row in enumerate(rows):
                row[p.label] = float(pr.mean[i])
                row[f"{p.label}_std"] = float(pr.std[i])
                row[f"{p.label}_disagreement"] = float(pr.epistemic_std[i])
            oods.append(pr.ood_score)
        ood = np.nanmean(np.stack(oods), 0) if oods else np.full(len(rows), np.nan)
        for i, row in enumerate(rows):
            row["ood_score"] = float(ood[i])
            if not np.isfinite(ood[i]) and not row["error"]:
                row["error"] = "descriptor failed (no neighbours within the cutoff?)"
    return rows


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Column order of a score table: base columns, predictor columns, ``ood_score``, ``error``."""
    cols = list(BASE_COLUMNS)
    for row in rows:
        for k in row:
            if k not in cols and k not in ("ood_score", "error"):
                cols.append(k)
    return [*cols, "ood_score", "error"]


def write_score_csv(path: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> Path:
    """Write a score table atomically (floats with 6 decimals; NaN as empty)."""
    cols = columns_of(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({c: _fmt(row.get(c, "")) for c in cols})
    p = Path(path)
    atomic_write_text(p, buf.getvalue())
    return p


def _fmt(v: Any) -> Any:
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, float | np.floating):
        return "" if not math.isfinite(float(v)) else f"{float(v):.6f}"
    return v


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)

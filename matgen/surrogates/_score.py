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

from matgen._files import atomic_path, atomic_write_text
from matgen.surrogates._hull import ConvexHull
from matgen.surrogates._predictor import NONNEGATIVE_LABELS, PropertyPredictor
from matgen.surrogates._relax import RelaxConfig, relax

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

    from matgen.crystal import CrystalBatch
    from matgen.surrogates._mlip import MLIP

PREDICTOR_DIR = Path(__file__).resolve().parents[1] / "assets" / "predictors"

#: Row keys kept out of the CSV by default (long text; see :func:`write_relaxed_extxyz`).
STRUCTURE_COLUMNS = ("relaxed_cif",)

#: eV/atom: a candidate this far *below* the known hull is flagged ``suspect``. An MLIP-judged
#: new stable phase that far down is more often an MLIP error (or a competing phase missing
#: from the reference) than a discovery; only an oracle label can vouch for it.
SUSPECT_BELOW_HULL = 0.05

#: The fixed leading columns of a score table (score rows call the first one ``id``; files
#: call it :data:`ID_KEY`).
BASE_COLUMNS = (
    "id",
    "formula",
    "num_atoms",
    "energy_per_atom",
    "e_form_per_atom",
    "e_above_hull",
    "suspect",
    "converged",
    "relax_steps",
    "max_force",
)

#: The id key of score CSVs and relaxed extxyz frames: the key ``matgen sample`` writes.
ID_KEY = "sample_id"

#: Unit and meaning of the score columns (``<label>`` columns of predictors: see
#: :func:`describe_score_column`).
SCORE_COLUMNS: dict[str, tuple[str, str]] = {
    ID_KEY: (
        "",
        (
            "the scored entry's id (sample_id of a generated file, else material_id, "
            "the CIF block / file name, or the frame / row number)"
        ),
    ),
    "formula": ("", "reduced formula"),
    "num_atoms": ("", "atoms in the cell"),
    "energy_per_atom": (
        "eV/atom",
        (
            "{mlip} energy of the relaxed structure (input structure "
            "with --no-relax), the MLIP's own scale (no corrections)"
        ),
    ),
    "e_form_per_atom": (
        "eV/atom",
        (
            "formation energy from the {mlip} energy (MLIP), on the MP "
            "hull's scale (MP's legacy corrections, MaterialsProjectCompatibility, "
            "as Matbench mp_e_form) against the hull's elemental references"
        ),
    ),
    "e_above_hull": (
        "eV/atom",
        (
            "{mlip} energy above the MP reference convex hull (signed: "
            "negative is below it), on the hull's scale: MP's legacy corrections "
            "(MaterialsProjectCompatibility; none for Se, Te, Br, I, Sb), not MP2020"
        ),
    ),
    "suspect": (
        "",
        (
            f"True when e_above_hull < -{SUSPECT_BELOW_HULL} eV/atom: more often an MLIP "
            "error than a discovery; only an oracle / DFT can vouch for it"
        ),
    ),
    "converged": ("", "the relaxation reached --fmax within --max-steps"),
    "relax_steps": ("", "FIRE steps taken"),
    "max_force": ("eV/Å", "largest remaining force (cell forces included) at the end"),
    "ood_score": (
        "",
        (
            "out-of-distribution score in [0, 1] of the property predictors "
            "(1: far from their training data; their predictions are less reliable)"
        ),
    ),
    "error": ("", "why the entry could not be scored (its other values are empty)"),
}

#: Units of the properties and score columns (the predictors', the oracles' labels and the
#: scorer's relaxation columns share these names); the one table the lab export also reads.
PROPERTY_UNITS = {
    "e_above_hull": "eV/atom",
    "e_form_per_atom": "eV/atom",
    "formation_energy_per_atom": "eV/atom",
    "energy_per_atom": "eV/atom",
    "band_gap": "eV",
    "bulk_modulus": "GPa",
    "shear_modulus": "GPa",
    "debye_temperature": "K",
    "max_force": "eV/Å",
    "volume_per_atom": "Å^3/atom",
    "density": "g/cm^3",
}


def is_suspect(e_above_hull: float, threshold: float = SUSPECT_BELOW_HULL) -> bool:
    """True when ``e_above_hull`` (signed, eV/atom) lies more than ``threshold`` below the hull."""
    try:
        v = float(e_above_hull)
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and v < -threshold


def mp_compatible_energies(
    mlip: MLIP, structures: Sequence[Structure], energies_per_atom: Sequence[float]
) -> np.ndarray:
    """MLIP energies per atom on the MP reference hull's energy scale: MP's legacy corrections
    (``MaterialsProjectCompatibility``, :data:`~matgen.surrogates._mlip.HULL_SCALE`), the scale
    of Matbench ``mp_e_form`` that :meth:`ConvexHull.from_mp` is built from.

    By the MLIP's energy scale (:func:`~matgen.surrogates._mlip.mlip_energy_scale`): raw PBE /
    PBE+U energies (SevenNet) get the legacy corrections; MP2020-corrected ones (CHGNet) lose
    MP2020's corrections and get the legacy ones (:func:`~matgen.surrogates._mlip.to_hull_scale`).
    NaN where the correction scheme rejects a structure or the energy is not finite.
    """
    from matgen.surrogates._mlip import mlip_energy_scale, to_hull_scale

    return to_hull_scale(list(structures), energies_per_atom, mlip_energy_scale(mlip))


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
    return [PropertyPredictor.load(p.parent) for p in sorted(root.glob("*/predictor.json"))]


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
        mlip: the potential (default :data:`~matgen.surrogates._mlip.DEFAULT_MLIP` on the
            ``auto`` device).
        hull: the reference hull (default :meth:`ConvexHull.from_mp` with the MLIP's own
            elemental reference energies where a table ships for it, e.g. CHGNet, else MP's;
            see :func:`default_hull`).
        predictors: property predictors (default :func:`load_default_predictors`).
        config: :class:`ScoreConfig`.
        progress: called with the number of structures finished by the relaxation.

    Returns:
        One dict per structure, in input order, with the :data:`BASE_COLUMNS` (``energy_per_atom``
        is the MLIP's own energy; ``e_form_per_atom`` and ``e_above_hull`` are on the MP hull's
        scale, MP's legacy corrections, see :func:`mp_compatible_energies`; ``suspect`` is True
        more than :data:`SUSPECT_BELOW_HULL` below the hull, see :func:`is_suspect`), for every
        predictor ``<label>``, ``<label>_std`` (calibrated) and ``<label>_disagreement``
        (ensemble spread), ``ood_score`` (mean over predictors, in [0, 1]), ``error``
        (empty, or why the structure could not be scored; its other values are then NaN) and
        ``relaxed_cif`` (the relaxed structure as CIF text -- the input structure with
        ``relax=False`` -- or ``""`` when the structure failed; not written to the CSV by
        :func:`write_score_csv`, see :func:`write_relaxed_extxyz`).
    """
    cfg = config or ScoreConfig()
    _seed_everything(cfg.seed)
    if hasattr(structures, "to_structures"):
        ids = list(ids) if ids is not None else list(structures.ids)
        structures = structures.to_structures()
    structures = list(structures)
    ids = [str(i) for i in (ids if ids is not None else range(len(structures)))]
    if mlip is None:
        from matgen.surrogates._mlip import load_mlip

        mlip = load_mlip()
    hull = hull if hull is not None else default_hull(mlip)
    predictors = list(predictors) if predictors is not None else load_default_predictors()
    rcfg = cfg.relax_config
    if not cfg.relax:
        rcfg = RelaxConfig(**{**rcfg.__dict__, "max_steps": 0})
    results = relax(structures, mlip, rcfg, ids=ids, progress=progress)
    e_hull = mp_compatible_energies(
        mlip,
        [
            r.structure if r.structure is not None else s
            for s, r in zip(structures, results, strict=True)
        ],
        [r.energy_per_atom for r in results],
    )
    rows: list[dict[str, Any]] = []
    final: list[Structure] = []
    for s, r, e_corr in zip(structures, results, e_hull, strict=True):
        rows.append(_energy_row(s, r, e_corr, hull))
        final.append(r.structure if r.structure is not None and r.error is None else s)
        rows[-1]["relaxed_cif"] = _cif(final[-1]) if r.error is None else ""
    if predictors:
        _add_predictions(rows, final, predictors)
    return rows


def _energy_row(s: Structure, r, e_corr: float, hull: ConvexHull) -> dict[str, Any]:
    """The base columns of one structure from its relaxation result ``r`` and its energy
    per atom on the MP hull's scale ``e_corr`` (NaN: the correction rejected it)."""
    e = r.energy_per_atom
    comp = s.composition
    row: dict[str, Any] = {
        "id": r.id,
        "formula": comp.reduced_formula,
        "num_atoms": len(s),
        "energy_per_atom": e,
        "e_form_per_atom": math.nan,
        "e_above_hull": math.nan,
        "suspect": False,
        "converged": r.converged,
        "relax_steps": r.steps,
        "max_force": r.max_force,
        "error": r.error or "",
    }
    if r.error is None and not math.isfinite(e_corr):
        row["error"] = "MP energy correction (legacy or MP2020) rejected the structure"
    elif r.error is None:
        row["e_form_per_atom"] = hull.e_form_per_atom(comp, e_corr)
        try:
            row["e_above_hull"] = hull.e_above_hull(comp, e_corr)
        except ImportError:  # a broken installation fails every structure: say so, loudly
            raise
        except Exception as exc:  # noqa: BLE001 - a hull failure is per structure
            row["error"] = f"hull failed: {exc}"
        row["suspect"] = is_suspect(row["e_above_hull"])
        if not math.isfinite(row["e_form_per_atom"]):
            missing = [el.symbol for el in comp.elements
                       if el.symbol not in hull.elemental_energies]  # fmt: skip
            row["error"] = f"no hull reference for {', '.join(missing)}"
    return row


def _add_predictions(
    rows: list[dict[str, Any]], final: list[Structure], predictors: Sequence[PropertyPredictor]
) -> None:
    """Predicted properties, their spreads and the OOD score of the ``final`` structures
    (descriptors computed once per featurizer setting)."""
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


def default_hull(mlip: MLIP | str) -> ConvexHull:
    """The MP reference hull with elemental references on ``mlip``'s energy scale (an MLIP or
    its name).

    With a shipped ``elemental_energies_<mlip.name>.json`` table (CHGNet): MP's elemental
    references for compounds and the MLIP's own for single-element compositions
    (``elemental="<name>-elements"``), else MP's elemental reference entries.
    """
    from matgen.surrogates._elemental import mlip_elemental_asset

    name = mlip if isinstance(mlip, str) else str(getattr(mlip, "name", ""))
    which = f"{name}-elements" if name and mlip_elemental_asset(name).exists() else "mp"
    return ConvexHull.from_mp(elemental=which)


def columns_of(rows: Sequence[dict[str, Any]], structures: bool = False) -> list[str]:
    """Column order of a score table: base columns (``id`` named :data:`ID_KEY`), predictor
    columns, ``ood_score``, ``error`` (then ``relaxed_cif`` only with ``structures=True``)."""
    cols = [ID_KEY, *BASE_COLUMNS[1:]]
    for row in rows:
        for k in row:
            if k not in cols and k not in ("id", "ood_score", "error", *STRUCTURE_COLUMNS):
                cols.append(k)
    cols += ["ood_score", "error"]
    if structures:
        cols += [c for c in STRUCTURE_COLUMNS if any(c in row for row in rows)]
    return cols


def relaxed_structures(rows: Sequence[dict[str, Any]]) -> list[Structure | None]:
    """The relaxed structures of score rows (``None`` where a row has none)."""
    from pymatgen.core import Structure

    return [
        Structure.from_str(r["relaxed_cif"], fmt="cif") if r.get("relaxed_cif") else None
        for r in rows
    ]


def describe_score_column(column: str, mlip: str = "the MLIP") -> tuple[str, str]:
    """``(unit, meaning)`` of a score-table column, predictor columns included."""
    if column in SCORE_COLUMNS:
        unit, text = SCORE_COLUMNS[column]
        return unit, text.format(mlip=mlip)
    for suffix, what in (
        ("_std", "calibrated standard deviation of the predicted {p}"),
        ("_disagreement", ("spread of the predictor ensemble's {p} (epistemic part of _std)")),
    ):
        if column.endswith(suffix):
            p = column[: -len(suffix)]
            return PROPERTY_UNITS.get(p, ""), what.format(p=p)
    extra = (
        " (predicted from the structure; not the MLIP's e_form_per_atom)"
        if column == "formation_energy_per_atom"
        else "; never below 0" if column in NONNEGATIVE_LABELS else ""
    )
    return PROPERTY_UNITS.get(column, ""), (
        f"{column} predicted by the property predictor "
        f"(ensemble mean, trained on DFT labels){extra}"
    )


def write_score_columns(
    path: str | os.PathLike,
    columns: Sequence[str],
    mlip: str = "the MLIP",
    extra: dict[str, tuple[str, str]] | None = None,
) -> Path:
    """Write the column dictionary of a score table (``column,unit,meaning``); ``extra``
    describes columns another judge added (e.g. :data:`matgen.dft.DFT_SCORE_COLUMNS`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["column", "unit", "meaning"])
    for c in columns:
        w.writerow([c, *((extra or {}).get(c) or describe_score_column(c, mlip))])
    p = Path(path)
    atomic_write_text(p, buf.getvalue())
    return p


#: Keys of a source frame's info not carried into a relaxed frame: the energies of the input
#: (replaced by the MLIP's) and keys of the score row.
_STALE_KEYS = ("energy", "free_energy", "forces", "stress", "energy_per_atom", "id")


def write_relaxed_extxyz(
    path: str | os.PathLike,
    rows: Sequence[dict[str, Any]],
    info: Sequence[dict[str, Any]] | None = None,
    mlip: str | None = None,
) -> Path:
    """Write the relaxed structures of score rows to an extxyz file (rows without one skipped).

    Each frame's total energy (eV; the MLIP's, as ``energy_per_atom`` times the atoms) is on
    an ASE ``SinglePointCalculator``, so ``atoms.get_potential_energy()`` works after
    ``ase.io.read``. Its ``info`` holds ``info[i]`` (the input frame's fields: sampling
    metadata of ``matgen sample``), then :data:`ID_KEY` (the row's ``id``), ``mlip``,
    ``energy_per_atom``, ``e_form_per_atom``, ``e_above_hull`` (eV/atom, see
    :data:`SCORE_COLUMNS`), ``suspect``, ``converged`` and the predicted properties.

    Args:
        path: the extxyz file (written atomically).
        rows: rows of :func:`score_structures`.
        info: one dict per row of fields to keep from the input (default: none).
        mlip: the MLIP's name, recorded in each frame.
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    infos = list(info) if info is not None else [{}] * len(rows)
    for row, s, src in zip(rows, relaxed_structures(rows), infos, strict=True):
        if s is None:
            continue
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.info = {k: v for k, v in src.items() if k not in _STALE_KEYS}
        atoms.info[ID_KEY] = str(row.get("id", ""))
        if mlip:
            atoms.info["mlip"] = mlip
        for k, v in row.items():
            if k in ("id", "formula", "error", *STRUCTURE_COLUMNS):
                continue
            if isinstance(v, bool | np.bool_):
                atoms.info[k] = bool(v)
            elif isinstance(v, float | int | np.floating | np.integer) and math.isfinite(float(v)):
                atoms.info[k] = v.item() if hasattr(v, "item") else v
        e = row.get("energy_per_atom")
        if isinstance(e, float | int) and math.isfinite(float(e)):
            atoms.calc = SinglePointCalculator(atoms, energy=float(e) * len(atoms))
        frames.append(atoms)
    p = Path(path)
    with atomic_path(p) as tmp:
        write(str(tmp), frames, format="extxyz")
    return p


def write_score_csv(
    path: str | os.PathLike, rows: Sequence[dict[str, Any]], structures: bool = False
) -> Path:
    """Write a score table atomically (floats with 6 decimals; NaN as empty; the rows' ``id``
    in the :data:`ID_KEY` column; :func:`write_score_columns` writes its dictionary).

    Args:
        path: the CSV file.
        rows: rows of :func:`score_structures`.
        structures: also write the ``relaxed_cif`` column (multi-line text; off by default to
            keep the table readable).
    """
    cols = columns_of(rows, structures=structures)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({c: _fmt(row.get("id" if c == ID_KEY else c, "")) for c in cols})
    p = Path(path)
    atomic_write_text(p, buf.getvalue())
    return p


def _fmt(v: Any) -> Any:
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, float | np.floating):
        return "" if not math.isfinite(float(v)) else f"{float(v):.6f}"
    return v


def _cif(s: Structure) -> str:
    from pymatgen.io.cif import CifWriter

    return str(CifWriter(s))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)

"""Lab hand-off: a merit-ranked CSV with a column dictionary, symmetrised CIFs with score
sidecars, and a self-contained HTML report (:mod:`matgen.campaign._report`).

Every export goes to a new folder; nothing is ever overwritten. What the folder holds:

* ``candidates.csv`` -- the selected candidates ranked by merit: oracle hits first, then the
  candidates still waiting for the oracle, then oracle misses; within each group by how far the
  oracle's (else the predicted) values lie from the hit window, then by predicted energy above
  the hull. Columns without a single value are left out.
* ``columns.csv`` -- unit and meaning of every column of ``candidates.csv``.
* ``cif/<id>.cif`` -- the relaxed structure, symmetrised (pymatgen ``CifWriter`` with
  ``symprec``) when the symmetrised cell still matches the relaxed one, else P1; the data block
  is named by the candidate id and ``#`` comments repeat the key scores.
* ``cif/<id>.json`` -- the candidate's full row (scores, oracle labels, versions) as JSON.
* ``report.html`` -- see :func:`matgen.campaign._report.render_report`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matgen.campaign._judges import (
    add_judges,
    describe_judge_column,
    judge_text,
    label_sources,
    oracle_failures,
    scorer_judge,
)
from matgen.campaign._store import CampaignStore
from matgen.surrogates._score import PROPERTY_UNITS as UNITS
from matgen.surrogates._score import SUSPECT_BELOW_HULL, is_suspect

#: ``symprec`` of the symmetrised CIFs and of the ``spacegroup`` column (Å).
SYMPREC = 0.1

#: Score keys of the scorer kept out of the CSV (structure text, ensemble internals).
_HIDDEN_SCORES = ("relaxed_cif", "ood", "ood_flag", "ood_score", "error")


@dataclass
class HullInfo:
    """The MP reference hull that ``e_above_hull`` was computed on, rebuilt for the export."""

    hull: Any = None  # matgen.surrogates.ConvexHull
    version: str = ""  # version of the rebuilt hull
    recorded: str = ""  # hull_version the rounds recorded
    note: str = ""  # why there is no hull, or how it differs from the recorded one
    compositions: set[str] = field(default_factory=set)  # checked formulas that are references
    checked: set[str] = field(default_factory=set)  # formulas checked against the references


def _new_folder(out: Path, stem: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    base = out / stem
    path, k = base, 1
    while True:
        try:
            path.mkdir(parents=False, exist_ok=False)
            return path
        except FileExistsError:
            k += 1
            path = Path(f"{base}_{k}")


def _finite(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------------------- objectives / hit
def objectives_of(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The objectives of a stored campaign config (``property``, ``goal``, window, ``scale``)."""
    return [dict(o) for o in config.get("objectives") or []]


def hit_definition(objectives: list[dict[str, Any]]) -> str:
    """The hit rule in words, e.g. ``oracle e_above_hull <= 0.1 eV/atom``."""
    parts = []
    for o in objectives:
        p, lo, hi = o["property"], o.get("minimum"), o.get("maximum")
        unit = f" {UNITS[p]}" if p in UNITS else ""
        if lo is not None and hi is not None:
            parts.append(f"{lo:g} <= {p} <= {hi:g}{unit}")
        elif hi is not None:
            parts.append(f"{p} <= {hi:g}{unit}")
        elif lo is not None:
            parts.append(f"{p} >= {lo:g}{unit}")
    if not parts:
        return "every labelled candidate (the objectives are goals without a window)"
    return "the oracle's label satisfies " + " and ".join(parts)


def _violation(values: dict[str, Any], objectives: list[dict[str, Any]]) -> float | None:
    """Distance outside the hit windows in units of each objective's ``scale`` (0: inside);
    None when a windowed property has no value."""
    total = 0.0
    for o in objectives:
        lo, hi = o.get("minimum"), o.get("maximum")
        if lo is None and hi is None:
            continue
        v = _finite(values.get(o["property"]))
        if v is None:
            return None
        gap = max(0.0, (lo - v) if lo is not None else 0.0, (v - hi) if hi is not None else 0.0)
        total += gap / (o.get("scale") or 1.0)
    return total


def is_hit(labels: dict[str, Any] | None, objectives: list[dict[str, Any]]) -> bool | None:
    """True / False from the oracle's labels, None when there are none (not labelled yet)."""
    if not labels:
        return None
    if all(_finite(v) is None for v in labels.values()):
        return False  # the oracle answered but could not measure: not a hit
    v = _violation(labels, objectives)
    return v is not None and v == 0.0


def _goal_sort_value(values: dict[str, Any], objectives: list[dict[str, Any]]) -> float:
    """Goals (maximise / minimise) as one number to sort by, smaller first."""
    s = 0.0
    for o in objectives:
        v = _finite(values.get(o["property"]))
        if o.get("goal") and v is not None:
            s += (-v if o["goal"] == "maximize" else v) / (o.get("scale") or 1.0)
    return s


# ---------------------------------------------------------------------------- hull
def _hull_elemental(version: str) -> str | None:
    """The ``elemental`` argument of ``ConvexHull.from_mp`` that produced ``version``."""
    m = re.fullmatch(r"mp(?:-(.+))?-[0-9a-f]{12}", version or "")
    if not m:
        return None
    return m.group(1) or "mp"


def load_hull(recorded: str, formulas: set[str] | None = None) -> HullInfo:
    """Rebuild the MP reference hull named by a round's ``hull_version``.

    The formation-energy hull (the competing phases) is the same for every elemental reference;
    a different digest means the reference data changed since scoring, which the note says.
    """
    info = HullInfo(recorded=recorded)
    elemental = _hull_elemental(recorded)
    if elemental is None:
        info.note = (f"the scores do not name an MP reference hull (hull_version "
                     f"{recorded or 'empty'}), so no hull diagram is drawn")
        return info
    try:
        from matgen.surrogates import ConvexHull

        hull = ConvexHull.from_mp(elemental=elemental if elemental != "mp-custom" else "mp")
    except Exception as exc:  # noqa: BLE001 - no reference data: report without diagrams
        info.note = f"the MP reference hull could not be loaded ({exc})"
        return info
    info.hull, info.version = hull, str(hull.version)
    if info.version != recorded:
        info.note = (f"the MP reference data differ from those used in scoring "
                     f"({info.version} now, {recorded} then): diagrams use today's references")
    known = _reference_formulas(set(formulas or ()))
    if known is not None:
        info.compositions, info.checked = known, set(formulas or ())
    return info


def _reference_formulas(wanted: set[str]) -> set[str] | None:
    """Those of the reduced formulas ``wanted`` that are MP hull reference compositions (for
    the ``novel`` column; None without reference data). Only reference rows with a wanted
    element set are parsed."""
    from pymatgen.core import Composition

    d = Path(os.environ.get("MATGEN_DATA_DIR", "")) / "hull_refs" / "mp_e_form_compositions.csv.gz"
    if not d.exists():
        d = Path(__file__).resolve().parents[1] / "assets" / "hull" / "mp_e_form_pruned.csv.gz"
    if not d.exists():
        return None
    import pandas as pd

    df = pd.read_csv(d)
    col = "formula" if "formula" in df.columns else df.columns[0]
    symbols = re.compile(r"[A-Z][a-z]?")
    element_sets = {frozenset(symbols.findall(f)) for f in wanted}
    out = set()
    for f in df[col].astype(str):
        if frozenset(symbols.findall(f)) not in element_sets:
            continue
        try:
            r = Composition(f).reduced_formula
        except Exception:  # noqa: BLE001, S112 - an odd formula is skipped
            continue
        if r in wanted:
            out.add(r)
    return out


def competing_phases(hull: Any, composition: str) -> tuple[str, float | None]:
    """The MP reference phases the hull has at ``composition`` (what an unstable candidate
    decomposes into) as ``"0.5 Li2O + 0.5 FeO"``, and the hull's formation energy (eV/atom)."""
    from pymatgen.core import Composition

    comp = Composition(composition)
    if len(comp.elements) == 1:
        return comp.elements[0].symbol + " (element)", 0.0
    try:
        pd = hull.phase_diagram([e.symbol for e in comp.elements])
        decomp = pd.get_decomposition(comp)
        e_hull = float(pd.get_hull_energy_per_atom(comp))
    except Exception:  # noqa: BLE001 - an element outside the references
        return "", None
    parts = sorted(((amt, e.composition.reduced_formula) for e, amt in decomp.items()
                    if amt > 1e-6), reverse=True)
    return " + ".join(f"{amt:.2f} {f}" for amt, f in parts), e_hull


# ---------------------------------------------------------------------------- rows
def _predicted(scores: dict[str, Any], properties: list[str]) -> dict[str, Any]:
    """The scorer's numbers in a stable order: objective properties first, then the rest."""
    keys = [k for k in scores if k not in _HIDDEN_SCORES and not k.endswith("_disagreement")
            and isinstance(scores[k], int | float)]
    first = []
    for p in ["e_above_hull", *properties]:
        for k in (p, f"{p}_std"):
            if k in keys and k not in first:
                first.append(k)
    rest = [k for k in keys if k not in first]
    order = first + sorted(rest)
    return {k: _finite(scores.get(k)) for k in order}


def export_rows(store: CampaignStore, properties: list[str], round_index: int | None,
                seed_of: dict[int, int], hull: HullInfo | None = None,
                objectives: list[dict[str, Any]] | None = None,
                novelty_checked: bool | None = None) -> list[dict[str, Any]]:
    """The merit-ranked rows of the selected candidates of ``round_index`` (default: all).

    Args:
        store: the campaign's state.
        properties: objective properties (their predictions come first).
        round_index: one round, or None for all.
        seed_of: round -> seed.
        hull: the MP reference hull (competing phases, ``novel``); None: those columns empty.
        objectives: the objectives (default: from the stored config) defining a hit.
        novelty_checked: whether dedup compared against a training set (default: the stored
            config has a ``train_csv`` that exists).
    """
    cfg = store.stored_config()
    objectives = objectives if objectives is not None else objectives_of(cfg)
    if novelty_checked is None:
        train = cfg.get("train_csv")
        novelty_checked = bool(train) and Path(str(train)).exists()
    rounds = {r["index"]: r for r in store.rounds()}
    labels, sources, failed = store.labels(), label_sources(store), oracle_failures(store)
    scorer = scorer_judge(cfg)
    sel = [c for c in store.candidates(selected=True)
           if round_index is None or c["selected_round"] == round_index]
    rows = []
    for c in sel:
        sc = c.get("scores") or {}
        r = rounds.get(c["selected_round"], {})
        lab = labels.get(c["id"], {})
        hit = is_hit(lab, objectives)
        row: dict[str, Any] = {
            "rank": 0,
            "id": c["id"],
            "formula": c["formula"],
            "reduced_formula": c["reduced_formula"],
            "spacegroup": c["spacegroup"] or "",
            "hit": "" if hit is None else hit,
            "outcome": ("awaiting oracle" if hit is None else "hit" if hit else "miss"),
        }
        for k, v in sorted(lab.items()):
            row[f"oracle_{k}"] = v
        row.update(_predicted(sc, properties))
        for p in properties:  # objective properties the scorer did not predict stay visible
            row.setdefault(p, None)
        add_judges(row, scorer, sources.get(c["id"], {}), failed.get(c["id"]))
        comp_known = None
        if hull is not None and c["reduced_formula"] in hull.checked:
            comp_known = (c["reduced_formula"] in hull.compositions  # elements always are
                          or len(re.findall(r"[A-Z]", c["reduced_formula"])) == 1)
        row["mp_composition"] = "" if comp_known is None else comp_known
        # dedup drops training-set matches before scoring, so a selected candidate is new to
        # the training set whenever the check ran
        row["novel"] = ("" if comp_known is None or not novelty_checked
                        else not comp_known)
        if hull is not None and hull.hull is not None:
            phases, e_hull = competing_phases(hull.hull, c["reduced_formula"])
            row["competing_phases"] = phases
            row["hull_e_form_per_atom"] = e_hull
        ood = _finite(sc.get("ood_score", sc.get("ood")))
        row["ood_score"] = ood
        row["ood_flag"] = bool(sc.get("ood_flag") or 0) if ("ood_flag" in sc or ood is not None) \
            else None
        row["acquisition"] = r.get("acquisition") or ""
        row["acquisition_value"] = c["acq_value"]
        row["selection_order"] = (c["rank"] + 1) if c["rank"] is not None else None
        row["round"] = c["selected_round"]
        row["model_version"] = r.get("model_version") or ""
        row["hull_version"] = r.get("hull_version") or ""
        row["generator_version"] = (rounds.get(c["round_index"]) or {}).get("generator_version")
        row["seed"] = seed_of.get(c["selected_round"], r.get("seed"))
        row["source_id"] = c["source_id"] or ""
        if sc.get("error"):
            row["score_error"] = str(sc["error"])
        row["suspect"] = any(is_suspect(row.get(k))
                             for k in ("oracle_e_above_hull", "e_above_hull"))
        row["warning"] = suspect_reason(row)
        row["_key"] = _merit_key(hit, lab, sc, objectives, c, bool(row["warning"]))
        rows.append(row)
    rows.sort(key=lambda x: x.pop("_key"))
    for i, row in enumerate(rows):
        row["rank"] = i + 1
    return rows


def suspect_reason(row: dict[str, Any]) -> str:
    """Why a row's numbers deserve a second look before synthesis ('' when nothing): an energy
    more than the scorer's ``SUSPECT_BELOW_HULL`` (0.05 eV/atom) below the MP hull, or a
    scoring error."""
    why = []
    for key, who in (("oracle_e_above_hull", "oracle"), ("e_above_hull", "prediction")):
        v = _finite(row.get(key))
        if v is not None and is_suspect(v):
            why.append(f"{who} puts it {-v:.3g} eV/atom below the MP hull: more likely an "
                       "MLIP or structure failure than a new stable phase")
    if row.get("score_error"):
        why.append(f"scorer: {row['score_error']}")
    return "; ".join(why)


def _merit_key(hit, lab, scores, objectives, c, suspect: bool = False) -> tuple:
    group = {True: 0, None: 1, False: 2}[hit]
    known = _violation(lab, objectives) if lab else None
    pred = _violation(scores, objectives)
    eh = _finite(lab.get("e_above_hull")) if lab else None
    eh_pred = _finite(scores.get("e_above_hull"))
    return (group, suspect,
            known if known is not None else math.inf,
            pred if pred is not None else math.inf,
            _goal_sort_value(lab or scores, objectives),
            eh if eh is not None else (eh_pred if eh_pred is not None else math.inf),
            c["selected_round"], c["rank"] if c["rank"] is not None else 0)


# ---------------------------------------------------------------------------- column dictionary
def _describe_column(col: str, cfg: dict[str, Any], objectives) -> tuple[str, str]:
    """(unit, meaning) of a CSV column."""
    judge = judge_text(cfg)
    fixed = {
        "rank": ("", ("merit order: oracle hits first, then candidates awaiting the oracle, then "
                     "oracle misses; within a group candidates with a warning last, then by "
                     "distance from the hit window (oracle value, else prediction), then by "
                     "energy above the hull (oracle, else prediction)")),
        "suspect": ("", (f"True when the oracle or the prediction puts the candidate more than "
                        f"{SUSPECT_BELOW_HULL:g} eV/atom below the MP hull: not counted as a "
                        "hit on the MLIP's word alone")),
        "warning": ("", (f"why the numbers deserve a second look: an energy more than "
                        f"{SUSPECT_BELOW_HULL:g} eV/atom below the MP hull (rarely real), or "
                        "a scoring error")),
        "id": ("", "candidate id; its structure is cif/<id>.cif (CIF data block data_<id>)"),
        "formula": ("", "formula of the unit cell"),
        "reduced_formula": ("", "reduced formula"),
        "spacegroup": ("", ("space group of the structure in the CIF (the scorer's relaxed "
                           "structure; spglib with the export's symprec, default 0.1 Å)")),
        "hit": ("", f"True when {hit_definition(objectives)}; empty: no oracle result yet"),
        "outcome": ("", ("hit, miss (oracle result outside the window or unmeasurable) or "
                        "awaiting oracle")),
        "mp_composition": ("", ("True when the Materials Project hull references contain a "
                               "phase of this reduced formula (the candidate may then be a new "
                               "polymorph or a known phase)")),
        "novel": ("", ("True when the structure matched no training structure (checked before "
                      "scoring) and its composition is not among the MP hull references; "
                      "empty when either check was not possible")),
        "competing_phases": ("", ("MP reference phases on the hull at this composition, as "
                                 "atom fractions: what an unstable candidate decomposes into")),
        "hull_e_form_per_atom": ("eV/atom", ("formation energy of the MP reference hull at this "
                                            "composition")),
        "ood_score": ("0-1", ("how far the structure lies from the property predictors' "
                             "training data: the percentile of its nearest-neighbour distance "
                             "in embedding space among the training set's own (mean over "
                             "predictors); 0.9 = farther than 90% of training crystals")),
        "ood_flag": ("", ("True when ood_score > 0.8: treat the predicted properties and their "
                         "std as unreliable")),
        "acquisition": ("", ("acquisition function that picked the batch (BoTorch; random: no "
                            "model)")),
        "acquisition_value": ("log scale", ("value of the acquisition function for this pick "
                              "given the earlier picks of its round (sequential greedy; for "
                              "qLogNEI/qLogNEHVI the log of the expected improvement): higher "
                              "= the model expected more; compare only within a round; empty "
                              "for random picks")),
        "selection_order": ("", "order in which the acquisition picked it within its round"),
        "round": ("", "campaign round that selected it"),
        "model_version": ("", "scorer / predictor version used for the round"),
        "hull_version": ("", "MP reference hull used for e_above_hull (digest of the data)"),
        "generator_version": ("", "generator that produced it (ft-rNNN: fine-tuned before NNN)"),
        "seed": ("", "random seed of the round"),
        "source_id": ("", "id in the generator's source (dataset row or sample id)"),
        "score_error": ("", "why the scorer could not score it fully"),
        "converged": ("", "1 when the scorer's relaxation reached its force threshold"),
        "relax_steps": ("", "relaxation steps taken by the scorer"),
        "num_atoms": ("", "atoms in the cell"),
    }
    if col in fixed:
        return fixed[col]
    if (judged := describe_judge_column(col)) is not None:
        return judged
    if col.startswith("oracle_"):
        p = col[len("oracle_"):]
        return UNITS.get(p, ""), f"{p} measured by the oracle ({judge['oracle']})"
    base = col.removesuffix("_std")
    unit = UNITS.get(base, "")
    what = {
        "e_above_hull": "energy above the MP reference hull",
        "e_form_per_atom": "formation energy from the MLIP's energy and the hull's elemental "
                           "references",
        "energy_per_atom": "total energy of the relaxed structure",
        "max_force": "largest force left after relaxation",
    }.get(base, base.replace("_", " "))
    if col.endswith("_std"):
        return unit, f"calibrated standard deviation of the predicted {base}"
    return unit, f"predicted {what} ({judge['scorer']})"


# ---------------------------------------------------------------------------- CIF
def symmetrised_cif(structure, block: str, comments: list[str], symprec: float = SYMPREC
                    ) -> tuple[str, str]:
    """CIF text of ``structure`` symmetrised with ``symprec`` and its space group.

    Falls back to tighter ``symprec`` and finally P1 when the symmetrised cell no longer
    matches ``structure`` (pymatgen ``StructureMatcher``). The data block is ``data_<block>``.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifWriter

    sm = StructureMatcher()
    text, sg = "", "P1 (1)"
    for sp in (symprec, 0.01, None):
        try:
            w = CifWriter(structure, symprec=sp)
            text = str(w)
            if sp is None:
                break
            back = Structure.from_str(text, fmt="cif")
            if sm.fit(back, structure):
                from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

                a = SpacegroupAnalyzer(structure, symprec=sp)
                sg = f"{a.get_space_group_symbol()} ({a.get_space_group_number()})"
                break
        except Exception:  # noqa: BLE001, S112 - spglib failure: try tighter, then P1
            continue
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", block)
    text = re.sub(r"^data_\S*", f"data_{safe}", text, count=1, flags=re.MULTILINE)
    head = "".join(f"# {line}\n" for line in comments)
    return head + text, sg


def _cif_comments(row: dict[str, Any]) -> list[str]:
    out = [(f"matgen candidate {row['id']} ({row['reduced_formula']}), rank {row['rank']}, "
           f"outcome: {row['outcome']}")]
    for k in ("oracle_e_above_hull", "e_above_hull", "band_gap", "formation_energy_per_atom"):
        v = _finite(row.get(k))
        if v is not None:
            unit = UNITS.get(k.removeprefix("oracle_"), "")
            out.append(f"{k} = {v:.4f} {unit}".rstrip())
    out.append("all scores: the .json file of the same name")
    return out


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


# ---------------------------------------------------------------------------- export
def export_campaign(
    store: CampaignStore,
    out_dir: str | Path,
    properties: list[str],
    round_index: int | None = None,
    title: str | None = None,
    symprec: float = SYMPREC,
) -> Path:
    """Write the lab hand-off into a NEW folder under ``out_dir`` (see the module docstring).

    Returns:
        The new folder.
    """
    from pymatgen.core import Structure

    from matgen.campaign._report import render_report

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    tag = f"round{round_index:03d}" if round_index is not None else "all"
    folder = _new_folder(Path(out_dir), f"{store.name}_{tag}_{stamp}")
    cfg = store.stored_config()
    objectives = objectives_of(cfg)
    rounds = store.rounds()
    seeds = {r["index"]: r["seed"] for r in rounds}
    recorded = next((r["hull_version"] for r in reversed(rounds) if r.get("hull_version")), "")
    hull = load_hull(recorded, {c["reduced_formula"] for c in store.candidates(selected=True)})
    rows = export_rows(store, properties, round_index, seeds, hull, objectives)

    # CIFs first: the spacegroup column is the one of the structure in the CIF
    (folder / "cif").mkdir()
    by_id = {c["id"]: c for c in store.candidates(selected=True)}
    structures, cifs = {}, {}
    for r in rows:
        c = by_id[r["id"]]
        s = Structure.from_str((c.get("scores") or {}).get("relaxed_cif") or c["cif"], fmt="cif")
        structures[r["id"]] = s
        with warnings.catch_warnings():  # CIF rounding notes of pymatgen: not the user's concern
            warnings.simplefilter("ignore")
            cifs[r["id"]], r["spacegroup"] = symmetrised_cif(s, r["id"], _cif_comments(r),
                                                             symprec)

    # columns: every key any row has, minus those no row fills (e.g. an e_above_hull_std the
    # scorer never predicts)
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    cols = [k for k in cols if k in ("rank", "id")
            or any(r.get(k) not in (None, "") for r in rows)]
    with (folder / "candidates.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols or ["rank", "id"], extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in cols})
    with (folder / "columns.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["column", "unit", "meaning"])
        for k in cols:
            w.writerow([k, *_describe_column(k, cfg, objectives)])
    for r in rows:
        (folder / "cif" / f"{r['id']}.cif").write_text(cifs[r["id"]])
        side = {k: r.get(k) for k in cols}
        side["cif_symprec"] = symprec
        side["units"] = {k: u for k in cols
                         if (u := _describe_column(k, cfg, objectives)[0])}
        (folder / "cif" / f"{r['id']}.json").write_text(
            json.dumps(side, indent=1, default=str) + "\n")
    (folder / "report.html").write_text(render_report(
        store, rows, cols, structures, hull, cfg, objectives, properties, round_index,
        title or store.name))
    return folder

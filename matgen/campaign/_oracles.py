"""Oracles behind one interface: a labelled dataset, a higher-fidelity MLIP, DFT (GPAW), a lab
via CSV."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from matgen._files import atomic_write_text
from matgen.campaign._results import ResultsFile, read_results


@runtime_checkable
class Oracle(Protocol):
    """Labels candidates.

    ``request(candidates, round_index)`` takes candidate rows (``id``, ``cif``, ``source_id``,
    ``formula``, ...) and returns ``{candidate_id: {property: value}}`` for the candidates it
    labelled now. A synchronous oracle labels every candidate (NaN where it cannot); an
    asynchronous one (the lab) returns ``{}`` and the labels arrive later through
    :meth:`LabOracle.read_results`. Requests are idempotent: asking again for a candidate gives
    the same answer and sends nothing new.
    """

    name: str
    synchronous: bool

    def request(
        self, candidates: Sequence[dict[str, Any]], round_index: int
    ) -> dict[str, dict[str, float]]: ...


class DatasetOracle:
    """The simulated lab: labels from a held-out labelled CSV.

    Candidates are matched by id (their ``source_id`` equals the CSV's ``id_column``) or by
    structure (same reduced formula, then pymatgen ``StructureMatcher``). Unmatched candidates
    get NaN labels.

    Args:
        csv_path: CDVAE-style CSV with property columns (gz allowed).
        properties: columns to return.
        id_column: the id column.
        match: ``"id"`` or ``"structure"``.
    """

    synchronous = True

    def __init__(
        self,
        csv_path: str | Path,
        properties: Sequence[str],
        id_column: str = "material_id",
        match: str = "id",
    ) -> None:
        import pandas as pd

        self.name = f"dataset:{Path(csv_path).name}"
        df = pd.read_csv(csv_path)
        if id_column not in df.columns:
            df[id_column] = [f"{Path(csv_path).name.split('.')[0]}-{i}" for i in range(len(df))]
        df[id_column] = df[id_column].astype(str)
        missing = [p for p in properties if p not in df.columns]
        if missing:
            raise ValueError(f"{csv_path}: no column(s) {', '.join(missing)}")
        self.df = df
        self.id_column = id_column
        self.properties = list(properties)
        self.match = match
        self._by_id = df.set_index(id_column)
        self._by_formula: dict[str, list[int]] | None = None

    def _labels(self, i: int) -> dict[str, float]:
        return {p: float(self.df[p].iat[i]) for p in self.properties}

    def _formula_index(self) -> dict[str, list[int]]:
        if self._by_formula is None:
            from pymatgen.core import Composition

            idx: dict[str, list[int]] = {}
            col = "pretty_formula" if "pretty_formula" in self.df.columns else None
            for i in range(len(self.df)):
                if col:
                    f = Composition(self.df[col].iat[i]).reduced_formula
                else:
                    f = _cif_reduced_formula(self.df["cif"].iat[i])
                idx.setdefault(f, []).append(i)
            self._by_formula = idx
        return self._by_formula

    def request(
        self, candidates: Sequence[dict[str, Any]], round_index: int
    ) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for c in candidates:
            out[c["id"]] = self._match_one(c)
        return out

    def _match_one(self, c: dict[str, Any]) -> dict[str, float]:
        nan = {p: float("nan") for p in self.properties}
        if self.match == "id":
            sid = str(c.get("source_id"))
            if sid in self._by_id.index:
                row = self._by_id.loc[sid]
                if hasattr(row, "ndim") and row.ndim > 1:
                    row = row.iloc[0]
                return {p: float(row[p]) for p in self.properties}
            return nan
        from pymatgen.analysis.structure_matcher import StructureMatcher
        from pymatgen.core import Structure

        s = Structure.from_str(c["cif"], fmt="cif")
        rows = self._formula_index().get(s.composition.reduced_formula, [])
        sm = StructureMatcher()
        for i in rows:
            ref = Structure.from_str(self.df["cif"].iat[i], fmt="cif")
            if sm.fit(s, ref):
                return self._labels(i)
        return nan


def _cif_reduced_formula(cif: str) -> str:
    from pymatgen.core import Structure

    return Structure.from_str(cif, fmt="cif").composition.reduced_formula


class MLIPOracle:
    """A higher-fidelity relaxation as the oracle (tighter ``fmax``, more steps).

    Returns ``energy_per_atom`` and, when a hull function is given, ``e_above_hull``.

    Args:
        relax_fn: ``(structures, fmax, steps) -> list[float]`` energies per atom (eV/atom);
            by default ``mlip`` through ``matgen.surrogates`` (``load_mlip`` + ``relax``), on
            the MP hull's energy scale (MP's legacy corrections, as in scoring).
        hull_fn: optional ``(structure, energy_per_atom) -> e_above_hull``; by default the MP
            hull with ``mlip``'s elemental references (:func:`~matgen.surrogates.default_hull`).
        fmax: force threshold, eV/Å.
        steps: most relaxation steps.
        mlip: an MLIP name of :func:`~matgen.surrogates.load_mlip` (``chgnet``, ``sevennet``,
            ``sevennet-0``).
    """

    synchronous = True

    def __init__(
        self,
        relax_fn=None,
        hull_fn=None,
        fmax: float = 0.02,
        steps: int = 500,
        mlip: str = "chgnet",
    ) -> None:
        from matgen.surrogates import mlip_version  # the checkpoint too: sevennet=7net-l3i5

        self.name = f"mlip:{mlip_version(mlip)}:fmax={fmax}"
        self.fmax, self.steps, self.mlip = fmax, steps, mlip
        self.relax_fn = relax_fn or self._default_relax
        self.hull_fn = hull_fn if hull_fn is not None else _default_hull_fn(mlip)

    def _default_relax(self, structures, fmax: float, steps: int) -> list[float]:
        from matgen.surrogates import RelaxConfig, load_mlip, relax
        from matgen.surrogates._score import mp_compatible_energies

        mlip = load_mlip(self.mlip, device="auto")
        res = relax(structures, mlip, RelaxConfig(fmax=fmax, max_steps=steps))
        final = [r.structure if r.structure is not None else s
                 for s, r in zip(structures, res, strict=True)]
        return [float(e) for e in
                mp_compatible_energies(mlip, final, [r.energy_per_atom for r in res])]

    def request(
        self, candidates: Sequence[dict[str, Any]], round_index: int
    ) -> dict[str, dict[str, float]]:
        from pymatgen.core import Structure

        structs = [Structure.from_str(c.get("relaxed_cif") or c["cif"], fmt="cif")
                   for c in candidates]
        energies = self.relax_fn(structs, self.fmax, self.steps)
        out = {}
        for c, s, e in zip(candidates, structs, energies, strict=True):
            lab = {"energy_per_atom": float(e)}
            if self.hull_fn is not None and np.isfinite(e):
                try:
                    lab["e_above_hull"] = float(self.hull_fn(s, float(e)))
                except Exception:  # noqa: BLE001 - an element outside the hull reference
                    lab["e_above_hull"] = float("nan")
            out[c["id"]] = lab
        return out


def _default_hull_fn(mlip: str = "chgnet"):
    """``(structure, energy_per_atom) -> e_above_hull`` on the MP reference hull with
    ``mlip``'s elemental references (lazy)."""
    cache: dict[str, Any] = {}

    def fn(structure, energy_per_atom: float) -> float:
        if "hull" not in cache:
            from matgen.surrogates import default_hull

            cache["hull"] = default_hull(mlip)
        return float(cache["hull"].e_above_hull(structure.composition, energy_per_atom))

    return fn


def _one_by_one(fn, items):
    return [fn(x) for x in items]


#: DFT row keys that become labels (eV/atom, GPAW's scale) -> label names
DFT_LABELS = {
    "dft_energy_per_atom": "energy_per_atom",
    "dft_e_form_per_atom": "e_form_per_atom",
    "dft_e_above_hull": "e_above_hull",
}


class DFTOracle:
    """GPAW DFT as the oracle (:class:`matgen.dft.DFTVerifier`: PBE, convergence-tested cutoff
    and k-points, relaxation from the scorer's MLIP-relaxed structure, formation energy and
    energy above the GPAW hull of the competing phases MP's hull names).

    Labels ``energy_per_atom``, ``e_form_per_atom`` and ``e_above_hull`` (eV/atom; under the
    settings' default ``"mp"`` scheme on the MP hull's scale: PBE+U and MP's corrections where
    MP applies them, see :mod:`matgen.dft._corrections`). A failed calculation (SCF not
    converged, time limit, no PAW dataset, ...) labels nothing: the submission is ``failed``
    with the DFT status as its detail (:attr:`failures`), never a number.

    Every calculation goes through the on-disk cache ``cache_dir`` (put it in the campaign's
    work folder): a killed campaign asks again and gets the finished ones from the cache.
    Each candidate's full DFT row is kept in ``cache_dir/candidates/<id>.json``.

    Args:
        cache_dir: the calculations' cache folder.
        settings: :class:`matgen.dft.DFTSettings` (default: the convergence-tested ones).
        data_dir: datasets root (MP-20 structures, hull references; default
            ``$MATGEN_DATA_DIR``).
        hull: also compute ``e_above_hull`` (relaxes the competing phases).
        verifier: a ready verifier (anything with ``verify_one(structure, label) -> row``).
        map_fn: ``(fn, rows) -> results`` runs :meth:`verify_row` over a batch; default one
            after the other here. The Prefect flow passes one that submits a task per
            candidate.
    """

    synchronous = True
    name = "dft:gpaw-pbe"

    def __init__(
        self,
        cache_dir: str | Path,
        settings=None,
        data_dir: str | Path | None = None,
        hull: bool = True,
        verifier=None,
        map_fn=None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.settings, self.data_dir, self.hull = settings, data_dir, hull
        self._verifier = verifier
        self._lock = threading.Lock()
        self.map_fn = map_fn
        self.failures: dict[str, str] = {}
        self.rows: dict[str, dict[str, Any]] = {}

    @property
    def verifier(self):
        with self._lock:  # the flow's tasks share one (one MP-20 index, one hull)
            if self._verifier is None:
                from matgen.dft import DFTVerifier

                self._verifier = DFTVerifier(
                    self.cache_dir, self.settings, self.data_dir, self.hull
                )
        return self._verifier

    def verify_row(self, candidate: dict[str, Any]) -> dict[str, Any]:
        """The DFT row (``dft_status``, ``dft_e_above_hull``, ...) of one candidate row."""
        from pymatgen.core import Structure

        try:
            s = Structure.from_str(candidate.get("relaxed_cif") or candidate["cif"], fmt="cif")
        except Exception as exc:  # noqa: BLE001 - a structure DFT cannot start from: labelled
            return {"dft_status": "error", "dft_message": f"unreadable CIF ({exc})"[:200]}
        return self.verifier.verify_one(s, label=str(candidate["id"]))

    @staticmethod
    def labels(row: dict[str, Any]) -> dict[str, float]:
        """Labels of a DFT row: NaN for every number it has not."""
        out = {}
        for key, name in DFT_LABELS.items():
            v = row.get(key)
            out[name] = float(v) if v is not None and np.isfinite(v) else float("nan")
        return out

    def request(
        self, candidates: Sequence[dict[str, Any]], round_index: int
    ) -> dict[str, dict[str, float]]:
        rows = (self.map_fn or _one_by_one)(self.verify_row, list(candidates))
        out = {}
        for c, row in zip(candidates, rows, strict=True):
            cid = c["id"]
            self.rows[cid] = row
            # the whole row (hull completeness, competing phases, MP corrections) for the record
            atomic_write_text(self.cache_dir / "candidates" / f"{cid}.json",
                              json.dumps(row, indent=1, default=str))
            out[cid] = self.labels(row)
            if row.get("dft_status") != "ok":
                self.failures[cid] = f"dft {row.get('dft_status')}: {row.get('dft_message')}"[:300]
        return out


class LabOracle:
    """A real lab: the batch is written to ``outbox/round_XXX.csv`` (+ CIFs) and labels come
    back through :meth:`read_results` (``matgen campaign import-results``).

    Args:
        outbox: folder for the request files.
        properties: columns expected in the results CSV.
    """

    synchronous = False

    def __init__(self, outbox: str | Path, properties: Sequence[str]) -> None:
        self.name = "lab"
        self.outbox = Path(outbox)
        self.properties = list(properties)

    def request(
        self, candidates: Sequence[dict[str, Any]], round_index: int
    ) -> dict[str, dict[str, float]]:
        folder = self.outbox / f"round_{round_index:03d}"
        (folder / "cif").mkdir(parents=True, exist_ok=True)
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(["candidate_id", "formula", "spacegroup", *self.properties])
        for c in candidates:
            w.writerow([c["id"], c["formula"], c.get("spacegroup") or "", *[""] * len(
                self.properties)])
            (folder / "cif" / f"{c['id']}.cif").write_text(c.get("relaxed_cif") or c["cif"])
        # same request file whatever the number of retries
        atomic_write_text(folder / "request.csv", buf.getvalue())
        return {}

    def read_results(self, csv_path: str | Path) -> ResultsFile:
        """Read and check a results CSV (see :func:`matgen.campaign._results.read_results`).

        Raises:
            ResultsFileError: a problem with the whole file (no ``candidate_id`` column, an
                unknown column, ...); row problems are listed in the result's ``errors``.
        """
        return read_results(csv_path, self.properties)

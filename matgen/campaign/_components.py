"""Candidate generator and scorer protocols, their adapters (model, surrogates, dataset
stand-ins) and building the components a campaign config names."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from matgen._files import atomic_path
from matgen.campaign._config import CampaignConfig
from matgen.campaign._oracles import DatasetOracle, DFTOracle, LabOracle, MLIPOracle, Oracle
from matgen.crystal import CrystalBatch


class MissingModelError(FileNotFoundError):
    """The generator checkpoint does not exist (the message names the path and the fix)."""


@runtime_checkable
class CandidateGenerator(Protocol):
    """Makes candidate crystals.

    ``__call__(n, conditions, chemsys, seed) -> CrystalBatch`` returns ``n`` crystals (fewer only
    if the source runs out); ``conditions`` maps property names to a target value or a
    ``(low, high)`` window (either end may be None), ``chemsys``
    lists allowed elements (or None), ``seed`` makes the draw reproducible. ``version`` names the
    model (written to the lab export).
    """

    version: str

    def __call__(
        self, n: int, conditions: dict[str, float], chemsys: list[str] | None, seed: int
    ) -> CrystalBatch: ...


@runtime_checkable
class Scorer(Protocol):
    """Scores candidates: relax, energy above hull, properties with uncertainty, OOD.

    ``__call__(batch, seed)`` returns one dict per crystal with float values: ``e_above_hull``
    (eV/atom), each property ``p`` with ``p_std``, ``ood`` (a score, larger = further from the
    training data), ``ood_flag`` (0/1), and optionally ``relaxed_cif`` (a string).
    ``update(structures, labels)`` retrains the property predictors with new oracle labels
    (active learning) and returns the new model version. ``model_version`` and
    ``hull_version`` name what was used.

    A scorer that learns should also offer ``save_learning_state(folder)`` and
    ``load_learning_state(folder)``: the campaign saves it after each round's update and loads
    it when it resumes, so a killed-and-resumed campaign scores (and names its model) as an
    uninterrupted one does (see :func:`save_scorer_state`).
    """

    model_version: str
    hull_version: str

    def __call__(self, batch: CrystalBatch, seed: int) -> list[dict[str, Any]]: ...

    def update(self, structures: list, labels: list[dict[str, float]]) -> str: ...


# ---------------------------------------------------------------------------------- dataset


def read_labelled_csv(path: str | Path) -> Any:
    """Read a CDVAE-style CSV (``material_id``, ``cif``, property columns); gz allowed."""
    import pandas as pd

    df = pd.read_csv(path)
    if "material_id" not in df.columns:
        df["material_id"] = [f"{Path(path).name.split('.')[0]}-{i}" for i in range(len(df))]
    df["material_id"] = df["material_id"].astype(str)
    return df


def _structures_from_cifs(cifs: Sequence[str]) -> list:
    from pymatgen.core import Structure

    return [Structure.from_str(c, fmt="cif") for c in cifs]


class DatasetGenerator:
    """A stand-in generator drawing unseen rows of a labelled CSV (simulated campaigns).

    Args:
        pool_csv: CDVAE-style CSV.
        exclude_ids: ids never to draw.
    """

    def __init__(self, pool_csv: str | Path, exclude_ids: Sequence[str] = ()) -> None:
        self.df = read_labelled_csv(pool_csv)
        self.version = f"dataset:{Path(pool_csv).name}"
        self._drawn: set[str] = set(exclude_ids)

    def __call__(
        self, n: int, conditions: dict[str, float], chemsys: list[str] | None, seed: int
    ) -> CrystalBatch:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self.df))
        rows = []
        for i in order:
            mid = self.df["material_id"].iat[i]
            if mid in self._drawn:
                continue
            rows.append(i)
            if len(rows) == n:
                break
        sub = self.df.iloc[rows]
        return CrystalBatch.from_structures(
            _structures_from_cifs(sub["cif"].tolist()), ids=sub["material_id"].tolist()
        )

    def exclude(self, ids: Sequence[str]) -> None:
        """Never draw ``ids`` again (candidates of earlier rounds)."""
        self._drawn.update(ids)


class DatasetScorer:
    """A stand-in scorer: true labels of a CSV plus seeded Gaussian noise, matched by id.

    ``noise`` gives the standard deviation per property (the reported ``_std``).
    """

    def __init__(self, labels_csv: str | Path, properties: Sequence[str], noise: dict[str, float]):
        df = read_labelled_csv(labels_csv)
        self.table = df.set_index("material_id")
        self.properties = list(properties)
        self.noise = dict(noise)
        self.model_version = f"dataset-scorer:{Path(labels_csv).name}"
        self.hull_version = "dataset"
        self.updates = 0

    def __call__(self, batch: CrystalBatch, seed: int) -> list[dict[str, Any]]:
        rng = np.random.default_rng(seed)
        out = []
        for cid in batch.ids:
            row: dict[str, Any] = {}
            for p in self.properties:
                true = self.table[p].get(cid, float("nan")) if p in self.table else float("nan")
                s = self.noise.get(p, 0.1)
                row[p] = float(true) + float(rng.normal(0.0, s))
                row[f"{p}_std"] = s
            row.setdefault("e_above_hull", row.get("e_above_hull", float("nan")))
            row["ood"] = 0.0
            row["ood_flag"] = 0.0
            out.append(row)
        return out

    def update(self, structures: list, labels: list[dict[str, float]]) -> str:
        self.updates += 1
        self.model_version = f"{self.model_version.split('+')[0]}+al{self.updates}"
        return self.model_version

    def save_learning_state(self, folder: Path) -> None:
        """Write what :meth:`update` learnt (its count and version) to ``folder``."""
        _write_json(
            folder / STATE_FILE, {"updates": self.updates, "model_version": self.model_version}
        )

    def load_learning_state(self, folder: Path) -> None:
        """Inverse of :meth:`save_learning_state`."""
        st = _read_json(folder / STATE_FILE)
        self.updates, self.model_version = int(st["updates"]), str(st["model_version"])


# ---------------------------------------------------------------------------------- model


class ModelGenerator:
    """Adapter: the conditional diffusion model as a :class:`CandidateGenerator`.

    Calls :func:`matgen.generate.generate` (the Python side of ``matgen sample``): de novo
    generation with window conditions (``band_gap=1:3``, ``e_above_hull=:0.1``) for the
    properties the checkpoint was trained on, classifier-free guidance, and the chemical system
    as a hard type mask.

    Args:
        checkpoint: checkpoint folder, its ``model.safetensors``, or a run dir.
        steps: sampler steps (None: the sampler's default).
        guidance: classifier-free guidance scale (1 = none).
        sampler: ``fast`` (few-step), ``pc`` (predictor-corrector) or ``consistency`` (a
            distilled checkpoint).
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
        batch_size: crystals per denoiser batch.

    Raises:
        MissingModelError: the checkpoint does not exist.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        steps: int | None = 50,
        guidance: float = 2.0,
        sampler: str = "fast",
        device: str = "auto",
        batch_size: int = 64,
    ) -> None:
        path = Path(checkpoint)
        from matgen.generate import read_metadata, resolve_checkpoint

        try:
            self.checkpoint = resolve_checkpoint(path)
        except FileNotFoundError:
            raise MissingModelError(
                f"generator checkpoint not found: {path} (the shipped default model lives in "
                "matgen/assets/models/default/; train one with `matgen train` or set "
                "generator.checkpoint in the campaign YAML)"
            ) from None
        meta = read_metadata(self.checkpoint)
        self.known_conditions = set((meta.get("conditions") or {}).keys())
        self.steps, self.guidance, self.sampler = steps, guidance, sampler
        self.device, self.batch_size = device, batch_size
        self.version = str(
            meta.get("run_name")
            or meta.get("step")
            and f"{self.checkpoint.name}@{meta.get('step')}"
            or self.checkpoint.name
        )

    def condition_strings(self, conditions: dict[str, Any]) -> list[str]:
        """``KEY=VALUE`` / ``KEY=LO:HI`` strings for the conditions the model knows."""
        out = []
        for k, v in conditions.items():
            if k not in self.known_conditions:
                continue
            if isinstance(v, tuple | list):
                lo, hi = v
                out.append(f"{k}={'' if lo is None else lo}:{'' if hi is None else hi}")
            else:
                out.append(f"{k}={float(v)}")
        return out

    def __call__(
        self, n: int, conditions: dict[str, Any], chemsys: list[str] | None, seed: int
    ) -> CrystalBatch:
        import tempfile

        from ase.io import read

        from matgen.generate import generate

        conds = self.condition_strings(conditions)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "samples.extxyz"
            generate(
                out,
                self.checkpoint,
                n,
                task="gen",
                chemsys="-".join(chemsys) if chemsys else None,
                conditions=conds,
                guidance=self.guidance if conds else 1.0,
                steps=self.steps,
                sampler=self.sampler,
                seed=seed,
                batch_size=self.batch_size,
                device=self.device,
                progress=False,
                log=None,
            )
            frames = read(out, index=":")
        ids = [
            str(a.info.get("sample_id") or a.info.get("material_id") or i)
            for i, a in enumerate(frames)
        ]
        return CrystalBatch.from_atoms(frames, ids=ids)


def surrogate_row(r: dict[str, Any]) -> dict[str, Any]:
    """One row of :func:`matgen.surrogates.score_structures` as a campaign score: the numbers
    as floats, ``ood`` / ``ood_flag``, ``error`` when set, and the MLIP-relaxed structure
    (``relaxed_cif``), which the oracles and the lab export hand on instead of the generated
    one: the energies belong to that geometry."""
    d: dict[str, Any] = {}
    for k, v in r.items():
        if isinstance(v, int | float):  # bool is an int
            d[k] = float(v)
    d["ood"] = d.get("ood_score", float("nan"))
    d["ood_flag"] = float(d["ood"] > 0.8) if math.isfinite(d["ood"]) else 1.0
    if r.get("error"):
        d["error"] = str(r["error"])
    elif isinstance(r.get("relaxed_cif"), str) and r["relaxed_cif"]:
        d["relaxed_cif"] = r["relaxed_cif"]
    return d


class SurrogateScorer:
    """Adapter: :func:`matgen.surrogates.score_structures` (MLIP relaxation, energy above the
    MP reference hull, property predictors with calibrated std, OOD score) as a :class:`Scorer`.

    Active learning: :meth:`update` refits each shipped predictor whose label has new oracle
    values, warm-started from the shipped training set when the predictor API allows it,
    otherwise on the labels alone, and keeps the updated predictors in memory.
    """

    def __init__(
        self,
        relax: bool = True,
        relax_steps: int = 100,
        fmax: float = 0.1,
        device: str = "auto",
        mlip: str = "chgnet",
    ) -> None:
        import matgen.surrogates as sur

        self._sur = sur
        self.relax, self.relax_steps, self.fmax, self.device = relax, relax_steps, fmax, device
        self.mlip_name = mlip
        self._mlip = None
        self._hull = None
        self.predictors = list(sur.load_default_predictors())
        self._mlip_tag = sur.mlip_version(mlip)  # names the checkpoint: sevennet=7net-l3i5
        self.model_version = (
            f"{self._mlip_tag}+" + ",".join(f"{p.label}" for p in self.predictors)
            if self.predictors
            else self._mlip_tag
        )
        self.hull_version = "mp-legacy-hull"
        self.updates = 0

    def _parts(self):
        if self._mlip is None:
            self._mlip = self._sur.load_mlip(self.mlip_name, device=self.device)
            self._hull = self._sur.default_hull(self._mlip)
            self.hull_version = str(getattr(self._hull, "version", None) or self.hull_version)
        return self._mlip, self._hull

    def __call__(self, batch: CrystalBatch, seed: int) -> list[dict[str, Any]]:
        mlip, hull = self._parts()
        cfg = self._sur.ScoreConfig(
            relax=self.relax,
            relax_config=self._sur.RelaxConfig(fmax=self.fmax, max_steps=self.relax_steps),
            seed=seed,
        )
        rows = self._sur.score_structures(
            batch, mlip=mlip, hull=hull, predictors=self.predictors, config=cfg
        )
        return [surrogate_row(r) for r in rows]

    def update(self, structures: list, labels: list[dict[str, float]]) -> str:
        if not self.predictors:
            return self.model_version
        new = []
        changed = []
        for p in self.predictors:
            pairs = [
                (s, lab[p.label])
                for s, lab in zip(structures, labels, strict=True)
                if lab.get(p.label) is not None
            ]
            if len(pairs) < 4:
                new.append(p)
                continue
            try:
                ss, ys = zip(*pairs, strict=True)
                q = p.update(list(ss), np.asarray(ys, dtype=float), epochs=10)
                changed.append(p.label)
            except Exception:  # noqa: BLE001 - keep the previous predictor on a failed refit
                q = p
            new.append(q)
        self.predictors = new
        if changed:
            self.updates += 1
            self.model_version = f"{self.model_version.split('+al')[0]}+al{self.updates}"
        return self.model_version

    def save_learning_state(self, folder: Path) -> None:
        """Write the refitted predictors (safetensors + JSON each), the update count and the
        version to ``folder``."""
        for k, p in enumerate(self.predictors):
            p.save(folder / f"predictor_{k}")
        _write_json(
            folder / STATE_FILE,
            {
                "updates": self.updates,
                "model_version": self.model_version,
                "predictors": [p.label for p in self.predictors],
            },
        )

    def load_learning_state(self, folder: Path) -> None:
        """Inverse of :meth:`save_learning_state`."""
        st = _read_json(folder / STATE_FILE)
        self.predictors = [
            self._sur.PropertyPredictor.load(folder / f"predictor_{k}")
            for k in range(len(st["predictors"]))
        ]
        # the stored version's MLIP part is replaced by the one scoring now (a campaign stored
        # when ``sevennet`` meant SevenNet-0 records its later rounds as SevenNet-l3i5's)
        _, sep, rest = str(st["model_version"]).partition("+")
        self.updates, self.model_version = int(st["updates"]), f"{self._mlip_tag}{sep}{rest}"


# ---------------------------------------------------------------------------------- learning state
#: The scorer's own file in a saved learning state folder.
STATE_FILE = "scorer.json"


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())


def _read_json(path: Path) -> dict:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise TypeError(f"{path}: not a JSON object")
    return data


def _round_of(folder: Path) -> int | None:
    name = folder.name
    if not name.startswith("round_") or not name[6:].isdigit():
        return None
    return int(name[6:])


def save_scorer_state(scorer: Any, root: str | Path, round_index: int) -> Path | None:
    """Save ``scorer``'s learning state as it is after round ``round_index``'s update, in
    ``root/round_NNNN`` (written in a temporary folder, then renamed: a kill leaves the old
    folder or the new one, never half of one). ``None`` for a scorer that keeps no state.

    The caller records the round as updated only after this returns; a state folder of a
    round not recorded as updated is never loaded (see :func:`load_scorer_state`).
    """
    save = getattr(scorer, "save_learning_state", None)
    if save is None:
        return None
    target = Path(root) / f"round_{round_index:04d}"
    # an update redone after a kill before its round was recorded replaces the old folder
    with atomic_path(target) as tmp:
        tmp.mkdir()
        save(tmp)
    return target


def load_scorer_state(scorer: Any, root: str | Path, updated_through: int | None) -> int | None:
    """Load into ``scorer`` the newest learning state saved for a round ``<=
    updated_through`` (the newest round the store records as updated); the round it came
    from, or ``None`` when there is none (the scorer keeps its fresh state).

    Raises:
        ValueError: the state folder is damaged (one line naming it).
    """
    load = getattr(scorer, "load_learning_state", None)
    root = Path(root)
    if load is None or updated_through is None or not root.is_dir():
        return None
    found = sorted(
        (r, p)
        for p in root.iterdir()
        if p.is_dir() and (r := _round_of(p)) is not None and r <= updated_through
    )
    if not found:
        return None
    r, folder = found[-1]
    try:
        load(folder)
    except Exception as exc:  # noqa: BLE001 - any damage is one line naming the folder
        raise ValueError(
            f"{folder}: scorer learning state unreadable ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())}); move the folder away to resume from "
            "an earlier round's state"
        ) from None
    return r


def finite(x: Any) -> float | None:
    """``float(x)`` or None for NaN / inf / non-numbers (JSON- and SQL-safe)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------------------------- factories
def build_generator(cfg: CampaignConfig) -> CandidateGenerator:
    """The generator of ``cfg`` (raises MissingModelError when the model is absent)."""
    g = cfg.generator
    if g.kind == "dataset":
        if not g.pool_csv:
            raise ValueError("generator.kind: dataset needs generator.pool_csv")
        return DatasetGenerator(g.pool_csv)
    return ModelGenerator(
        g.checkpoint_path(),
        steps=g.steps,
        guidance=g.guidance,
        sampler=g.sampler,
        batch_size=g.chunk_size,
    )


def build_scorer(cfg: CampaignConfig) -> Scorer:
    """The scorer of ``cfg``."""
    s = cfg.scorer
    if s.kind == "dataset":
        if not s.labels_csv:
            raise ValueError("scorer.kind: dataset needs scorer.labels_csv")
        props = list(dict.fromkeys([*cfg.property_names(), "e_above_hull"]))
        import pandas as pd

        cols = set(pd.read_csv(s.labels_csv, nrows=1).columns)
        return DatasetScorer(s.labels_csv, [p for p in props if p in cols], s.noise)
    return SurrogateScorer(relax=s.relax, relax_steps=s.relax_steps, fmax=s.fmax, mlip=s.mlip)


def build_oracle(cfg: CampaignConfig) -> Oracle:
    """The oracle of ``cfg``."""
    o = cfg.oracle
    props = o.properties or cfg.property_names()
    if o.kind == "dataset":
        if not o.csv:
            raise ValueError("oracle.kind: dataset needs oracle.csv")
        return DatasetOracle(o.csv, props, id_column=o.id_column, match=o.match)
    if o.kind == "mlip":
        return MLIPOracle(fmax=o.fmax, steps=o.steps, mlip=o.mlip)
    if o.kind == "dft":
        return DFTOracle(cfg.work_path() / "dft_cache", o.dft_settings(), hull=o.dft_hull)
    return LabOracle(cfg.work_path() / "outbox", props)

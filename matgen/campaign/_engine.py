"""One campaign round as idempotent, atomically committed steps (no Prefect here).

generate -> dedup -> score -> select -> submit -> label -> update -> report. Every step first
checks the round's status in the store and returns at once when it has already been done;
otherwise it computes, then writes its outputs and advances the status in one transaction.
The heavy parts of ``generate`` and ``score`` are pure functions of their inputs
(:meth:`Campaign.generate_chunk`, :meth:`Campaign.score_chunk`) so orchestrators can shard,
cache and retry them.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from matgen.acquisition import (
    FeatureScaler,
    PoolEnsembleModel,
    PredictorPrior,
    Target,
    crystal_features,
    fit_gp_models,
    select,
)
from matgen.campaign._checks import ConfigChangedError, check_config
from matgen.campaign._components import (
    CandidateGenerator,
    DatasetGenerator,
    DatasetScorer,
    ModelGenerator,
    Scorer,
    SurrogateScorer,
    finite,
    load_scorer_state,
    save_scorer_state,
)
from matgen.campaign._config import CampaignConfig, config_changes
from matgen.campaign._metrics import round_metrics
from matgen.campaign._oracles import DatasetOracle, LabOracle, MLIPOracle, Oracle
from matgen.campaign._results import ResultsFile
from matgen.campaign._store import STEPS, CampaignStore, StepConflict
from matgen.crystal import CrystalBatch

log = logging.getLogger("matgen.campaign")


# ---------------------------------------------------------------------------------- factories
def build_generator(cfg: CampaignConfig) -> CandidateGenerator:
    """The generator of ``cfg`` (raises MissingModelError when the model is absent)."""
    g = cfg.generator
    if g.kind == "dataset":
        if not g.pool_csv:
            raise ValueError("generator.kind: dataset needs generator.pool_csv")
        return DatasetGenerator(g.pool_csv)
    return ModelGenerator(g.checkpoint_path(), steps=g.steps, guidance=g.guidance,
                          sampler=g.sampler, batch_size=g.chunk_size)


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
    return LabOracle(cfg.work_path() / "outbox", props)


# ---------------------------------------------------------------------------------- helpers
def _select_feasible(model, x_pool, q, targets, props, baseline, groups, kind, seed):
    """:func:`matgen.acquisition.select`, falling back to the probability of a hit (``pof``)
    when BoTorch finds no baseline point inside the hit windows ("all training points are
    infeasible": early rounds with no hit yet). The improvement over the best feasible point
    is then undefined and BoTorch itself advises probability of feasibility; the round
    records ``pof`` as its acquisition."""
    import warnings

    from botorch.exceptions.warnings import BotorchWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BotorchWarning)
        sel = select(model, x_pool, q, targets, props, baseline, groups=groups, kind=kind,
                     seed=seed)
    infeasible = any("training points are infeasible" in str(w.message) for w in caught)
    for w in caught:
        if "training points are infeasible" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    windows = any(t.minimum is not None or t.maximum is not None for t in targets)
    if infeasible and windows and kind in ("auto", "nei", "margin_nei"):
        log.info("no labelled candidate is inside the hit windows yet: selecting by the "
                 "probability of a hit (pof)")
        sel = select(model, x_pool, q, targets, props, baseline, groups=groups, kind="pof",
                     seed=seed)
    return sel


def predictor_columns(rows: Sequence[dict], props: Sequence[str]) -> torch.Tensor | None:
    """``(n, 2m)``: the scorer's prediction of each property, then its ``_std``, for every row;
    None unless all are finite and every std positive (what :class:`PredictorPrior` needs)."""
    vals = []
    for r in rows:
        sc = r.get("scores") or {}
        row = [sc.get(p) for p in props] + [sc.get(f"{p}_std") for p in props]
        if any(v is None or not np.isfinite(v) for v in row) or any(
                v <= 0 for v in row[len(props):]):
            return None
        vals.append(row)
    return torch.tensor(vals, dtype=torch.float64).reshape(len(rows), 2 * len(props))


def is_suspect_candidate(c: dict) -> bool:
    """A candidate the scorer put more than 0.05 eV/atom below the known hull (the score
    row's ``suspect`` flag, or its ``e_above_hull`` for scorers that set no flag)."""
    from matgen.surrogates._score import is_suspect

    sc = c.get("scores") or {}
    return bool(sc.get("suspect")) or is_suspect(sc.get("e_above_hull"))


@dataclass
class ImportReport:
    """What an import did: rows ``accepted`` (candidates labelled now), ``filled`` (labels
    added to a labelled candidate), ``corrected``, ``unchanged``, and one line per rejected
    row in ``errors`` (``rejected`` counts them)."""

    accepted: int = 0
    filled: int = 0
    corrected: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


def _describe(structure) -> tuple[str, str, str | None]:
    """(formula, reduced formula, space group symbol or None)."""
    import warnings

    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    comp = structure.composition
    # elements sort by electronegativity; noble gases have none and pymatgen warns (nothing a
    # user can act on)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sg = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_symbol()
        except Exception:  # noqa: BLE001 - spglib fails on broken cells
            sg = None
        return comp.formula.replace(" ", ""), comp.reduced_formula, sg


def _validity_reason(structure) -> str | None:
    """A one-line reason a generated crystal is not physical, or None."""
    n = len(structure)
    if n == 0:
        return "no atoms"
    vpa = structure.volume / n
    if not np.isfinite(vpa) or vpa < 1.0 or vpa > 200.0:
        return f"volume per atom {vpa:.2f} A^3 outside [1, 200]"
    if n > 1:
        d = structure.distance_matrix
        dmin = float(d[np.triu_indices(n, 1)].min())
        if dmin < 0.5:
            return f"atoms {dmin:.2f} A apart (< 0.5 A)"
    return None


class Campaign:
    """A campaign bound to its config, state store and components.

    Components are created lazily (models are loaded on first use, inside the process that
    runs the step) unless passed in (tests inject stand-ins).

    The campaign's stored config must equal ``cfg`` (up to operational keys such as
    ``rounds`` and ``task_runner``): a changed config raises :class:`ConfigChangedError`
    naming every change, unless ``accept_config_change`` is set, which stores ``cfg`` as a
    new config version (rounds started from then on record it).

    Every step claims its lease in the store first (:meth:`claim`), so two runs of one
    campaign never do the same generation, scoring or oracle work: the second waits, then
    finds the step done.

    Args:
        cfg: the campaign config.
        generator, scorer, oracle: optional components overriding the config's.
        store: optional store (default: ``cfg.database_url()``).
        accept_config_change: apply a changed config instead of refusing it.

    Raises:
        ConfigChangedError: ``cfg`` differs from the stored config (one line).
        StoreError: the state database is not readable (one line).
    """

    def __init__(
        self,
        cfg: CampaignConfig,
        generator: CandidateGenerator | None = None,
        scorer: Scorer | None = None,
        oracle: Oracle | None = None,
        store: CampaignStore | None = None,
        accept_config_change: bool = False,
    ) -> None:
        self.cfg = cfg
        self._generator = generator
        self._scorer = scorer
        self._oracle = oracle
        self.store = store or CampaignStore(
            cfg.database_url(), cfg.name, cfg.model_dump(mode="json")
        )
        self.targets = [
            Target(o.property, goal=o.goal, minimum=o.minimum, maximum=o.maximum, scale=o.scale)
            for o in cfg.objectives
        ]
        self._train_index: dict[str, list[str]] | None = None
        self._scorer_round: int | None = None  # the updated round the scorer's state is from
        self._lock = threading.RLock()
        self._warnings: list[str] | None = None
        self._progress: Any = None  # a matgen._progress.Progress while run() shows one
        self.config_version = self._check_stored_config(accept_config_change)

    def _check_stored_config(self, accept: bool) -> int:
        changes = config_changes(self.store.stored_config(), self.cfg)
        if not changes:
            return self.store.config_version()
        nxt = self.next_round()
        if not accept:
            raise ConfigChangedError(
                f"campaign {self.cfg.name!r} was started with another config: "
                f"{'; '.join(changes)} (pass --accept-config-change to use the new config from "
                f"round {nxt} on, or give the campaign a new name)")
        v = self.store.record_config(self.cfg.model_dump(mode="json"), "; ".join(changes), nxt)
        log.warning("campaign %s: config version %d from round %d: %s", self.cfg.name, v, nxt,
                    "; ".join(changes))
        return v

    def check(self) -> list[str]:
        """Check the objectives against the scorer and oracle (see :func:`check_config`).

        Returns:
            Warnings (already logged).

        Raises:
            CampaignConfigError: one line per problem.
        """
        if self._warnings is None:
            self._warnings = check_config(self.cfg)
            for w in self._warnings:
                log.warning("%s", w)
        return self._warnings

    # ------------------------------------------------------------------ components
    @property
    def generator(self) -> CandidateGenerator:
        with self._lock:  # parallel chunks of one process share one loaded model
            if self._generator is None:
                self._generator = build_generator(self.cfg)
        return self._generator

    @property
    def scorer(self) -> Scorer:
        """The scorer, with the learning state of the newest round the store records as
        updated (saved by :meth:`_update`): a resumed run, or one that waited while another
        run updated, scores as an uninterrupted run would."""
        with self._lock:
            if self._scorer is None:
                self._scorer = build_scorer(self.cfg)
            updated = [r["index"] for r in self.store.rounds()
                       if STEPS.index(r["status"]) >= STEPS.index("updated")]
            newest = max(updated, default=None)
            if newest != self._scorer_round:
                load_scorer_state(self._scorer, self._scorer_state_dir(), newest)
                self._scorer_round = newest
        return self._scorer

    def _scorer_state_dir(self) -> Path:
        return self.cfg.work_path() / "scorer_state"

    @property
    def oracle(self) -> Oracle:
        with self._lock:
            if self._oracle is None:
                self._oracle = build_oracle(self.cfg)
        return self._oracle

    # ------------------------------------------------------------------ status
    def next_round(self) -> int:
        """The first round not yet reported (the one a run resumes)."""
        done = [r["index"] for r in self.store.rounds() if r["status"] == "reported"]
        i = 0
        while i in done:
            i += 1
        return i

    def status(self, index: int) -> str | None:
        r = self.store.round(index)
        return None if r is None else r["status"]

    def _done(self, index: int, step: str) -> bool:
        return self.store.status_reached(index, step)

    @contextmanager
    def claim(self, index: int, step: str):
        """Hold the store's lease on ``step`` of round ``index`` for the ``with`` block.

        Yields True when this worker must do the step, False when it is done already (or got
        done by another worker while this one waited for its lease). A crashed holder's claim
        is taken over (at once on this host, after ``lease_seconds`` elsewhere).
        """
        if self._done(index, step):
            yield False
            return
        with self.store.hold(f"round{index}:{step}", ttl=self.cfg.lease_seconds,
                             stop=lambda: self._done(index, step)) as held:
            yield held and not self._done(index, step)

    @contextmanager
    def _step_tx(self, index: int, step: str):
        """The transaction of one step; losing a race to another worker is not an error.

        When two runs of one campaign overlap (a scheduled run and a manual one), the
        compare-and-set in :meth:`CampaignStore.advance` lets exactly one commit the step; the
        other's transaction is rolled back and it carries on from the committed state.
        """
        try:
            with self.store.transaction() as conn:
                yield conn
        except StepConflict:
            if not self._done(index, step):
                raise
            log.info("round %d: step %r was committed by another worker", index, step)

    # ------------------------------------------------------------------ 1. generate
    def conditions(self) -> dict[str, float]:
        """Generation conditions from the objectives, steered by the labels so far.

        A window asks for the window (``(lo, hi)``, sampled uniformly by the generator); a goal
        asks for the best oracle value seen so far (or the value in ``generator.conditions``
        before any label).
        """
        cond: dict[str, Any] = dict(self.cfg.generator.conditions)
        labels = self.store.labels()
        for o in self.cfg.objectives:
            if o.minimum is not None or o.maximum is not None:
                cond.setdefault(o.property, (o.minimum, o.maximum))
            elif o.goal is not None:
                seen = [lab[o.property] for lab in labels.values()
                        if lab.get(o.property) is not None]
                if seen:
                    cond[o.property] = max(seen) if o.goal == "maximize" else min(seen)
        return cond

    def chunk_plan(self, index: int) -> list[tuple[int, int, int]]:
        """``(chunk, n, seed)`` of the generation chunks of round ``index``."""
        size = max(1, self.cfg.generator.chunk_size)
        seed = self.cfg.round_seed(index)
        out, left, k = [], self.cfg.pool_size, 0
        while left > 0:
            n = min(size, left)
            out.append((k, n, seed + 104729 * k))
            left -= n
            k += 1
        return out

    def generate_chunk(self, n: int, seed: int, conditions: dict[str, Any]) -> list[dict]:
        """Generate ``n`` crystals (pure given the seed): rows ``{source_id, cif}``."""
        gen = self.generator
        if isinstance(gen, DatasetGenerator):
            gen.exclude([c["source_id"] for c in self.store.candidates() if c["source_id"]])
        chemsys = self.cfg.generator.chemsys or None
        batch = gen(n, conditions, chemsys, seed)
        return [
            {"source_id": sid, "cif": s.to(fmt="cif")}
            for sid, s in zip(batch.ids, batch.to_structures(), strict=True)
        ]

    def commit_generated(self, index: int, chunks: Sequence[Sequence[dict]]) -> int:
        """Write the generated candidates and advance to ``generated`` (one transaction)."""
        from pymatgen.core import Structure

        rows = []
        pos = 0
        for chunk in chunks:
            for r in chunk:
                s = Structure.from_str(r["cif"], fmt="cif")
                formula, reduced, sg = _describe(s)
                rows.append(
                    {
                        "id": f"{self.cfg.name}-r{index:03d}-{pos:05d}",
                        "round_index": index,
                        "position": pos,
                        "source_id": r.get("source_id"),
                        "formula": formula,
                        "reduced_formula": reduced,
                        "spacegroup": sg,
                        "cif": r["cif"],
                        "status": "generated",
                    }
                )
                pos += 1
        with self._step_tx(index, "generated") as conn:
            self.store.advance(conn, index, "generated")  # first: a lost race writes nothing
            self.store.add_candidates(conn, rows)
        return len(rows)

    def generate(self, index: int) -> None:
        self.store.ensure_round(index, self.cfg.round_seed(index))
        with self.claim(index, "generated") as todo:
            if not todo:
                return
            cond = self.conditions()
            plan = self.chunk_plan(index)
            chunks = []
            for k, n, seed in plan:
                self._note(index, f"generating, chunk {k + 1}/{len(plan)}")
                chunks.append(self.generate_chunk(n, seed, cond))
            self.commit_generated(index, chunks)

    # ------------------------------------------------------------------ 2. dedup
    def _train_formulas(self) -> dict[str, list[str]]:
        """Reduced formula -> CIFs of the training set (``train_csv``)."""
        if self._train_index is None:
            idx: dict[str, list[str]] = {}
            if self.cfg.train_csv and not Path(self.cfg.train_csv).exists():
                log.warning("train_csv %s not found: no novelty check against training data",
                            self.cfg.train_csv)
            elif self.cfg.train_csv:
                import pandas as pd
                from pymatgen.core import Composition

                df = pd.read_csv(self.cfg.train_csv)
                if "pretty_formula" in df.columns:
                    forms = [Composition(f).reduced_formula for f in df["pretty_formula"]]
                else:
                    from pymatgen.core import Structure

                    forms = [Structure.from_str(c, fmt="cif").composition.reduced_formula
                             for c in df["cif"]]
                for f, c in zip(forms, df["cif"], strict=True):
                    idx.setdefault(f, []).append(c)
            self._train_index = idx
        return self._train_index

    def dedup(self, index: int) -> None:
        """Mark invalid and duplicate candidates (vs training data, earlier rounds, this round)."""
        with self.claim(index, "deduped") as todo:
            if todo:
                self._dedup(index)

    def _dedup(self, index: int) -> None:
        from pymatgen.analysis.structure_matcher import StructureMatcher
        from pymatgen.core import Structure

        sm = StructureMatcher()
        cands = self.store.candidates(index)
        earlier = [c for c in self.store.candidates() if c["round_index"] < index
                   and c["status"] == "scored"]
        seen: dict[str, list[tuple[str, Structure]]] = {}
        for c in earlier:
            seen.setdefault(c["reduced_formula"], []).append(
                (c["id"], Structure.from_str(c["cif"], fmt="cif"))
            )
        train = self._train_formulas()
        parsed_train: dict[str, list[Structure]] = {}
        updates = []
        for c in cands:
            s = Structure.from_str(c["cif"], fmt="cif")
            reason = _validity_reason(s)
            status = "invalid" if reason else "generated"
            if status == "generated":
                f = c["reduced_formula"]
                if f in train:
                    if f not in parsed_train:
                        parsed_train[f] = [Structure.from_str(x, fmt="cif") for x in train[f]]
                    if any(sm.fit(s, t) for t in parsed_train[f]):
                        status, reason = "duplicate", "matches a training structure"
                if status == "generated":
                    for oid, o in seen.get(f, []):
                        if sm.fit(s, o):
                            status, reason = "duplicate", f"matches {oid}"
                            break
                if status == "generated":
                    seen.setdefault(f, []).append((c["id"], s))
            updates.append((c["id"], status, reason))
        with self._step_tx(index, "deduped") as conn:
            self.store.advance(conn, index, "deduped")
            for cid, status, reason in updates:
                self.store.update_candidate(conn, cid, status=status, reason=reason)

    # ------------------------------------------------------------------ 3. score
    def score_plan(self, index: int) -> list[list[dict]]:
        """Chunks of candidate rows (``id``, ``cif``, ``source_id``) to score."""
        cands = [c for c in self.store.candidates(index) if c["status"] == "generated"]
        size = max(1, self.cfg.scorer.chunk_size)
        rows = [{"id": c["id"], "cif": c["cif"], "source_id": c["source_id"]} for c in cands]
        return [rows[i : i + size] for i in range(0, len(rows), size)]

    def score_chunk(self, rows: Sequence[dict], seed: int) -> list[dict[str, Any]]:
        """Score candidate rows (pure given inputs and seed): one score dict per row."""
        if not rows:
            return []
        from pymatgen.core import Structure

        structs = [Structure.from_str(r["cif"], fmt="cif") for r in rows]
        batch = CrystalBatch.from_structures(
            structs, ids=[r["source_id"] or r["id"] for r in rows], dtype=torch.float64
        )
        scores = self.scorer(batch, seed)
        out = []
        for s in scores:
            d = {}
            for k, v in dict(s).items():
                d[k] = v if isinstance(v, str) else finite(v)
            out.append(d)
        return out

    def commit_scores(self, index: int, chunks: Sequence[Sequence[dict]],
                      scores: Sequence[Sequence[dict]]) -> None:
        """Write scores and advance to ``scored`` (one transaction)."""
        sc = self.scorer
        with self._step_tx(index, "scored") as conn:
            self.store.advance(
                conn, index, "scored",
                model_version=str(getattr(sc, "model_version", "?")),
                hull_version=str(getattr(sc, "hull_version", "?")),
            )
            for rows, res in zip(chunks, scores, strict=True):
                for r, s in zip(rows, res, strict=True):
                    self.store.update_candidate(conn, r["id"], status="scored", scores=s)

    def score(self, index: int) -> None:
        with self.claim(index, "scored") as todo:
            if not todo:
                return
            plan = self.score_plan(index)
            seed = self.cfg.round_seed(index)
            scores = []
            for k, rows in enumerate(plan):
                self._note(index, f"scoring, chunk {k + 1}/{len(plan)}")
                scores.append(self.score_chunk(rows, seed + 7 * k))
            self.commit_scores(index, plan, scores)

    # ------------------------------------------------------------------ 4. select
    def _pool(self, index: int) -> list[dict]:
        submitted = {s["candidate_id"] for s in self.store.submissions()}
        rows = [c for c in self.store.candidates(status="scored")
                if not c["selected"] and c["id"] not in submitted]
        if not self.cfg.acquisition.include_untested_from_earlier_rounds:
            rows = [c for c in rows if c["round_index"] == index]
        return rows

    def _features(self, rows: Sequence[dict]) -> torch.Tensor:
        from pymatgen.core import Structure

        if not rows:
            return torch.zeros(0, 0, dtype=torch.float64)
        structs = [Structure.from_str(r["cif"], fmt="cif") for r in rows]
        feats = crystal_features(CrystalBatch.from_structures(structs, dtype=torch.float64))
        props = self.cfg.property_names()
        pred = torch.tensor(
            [[(r.get("scores") or {}).get(p) if (r.get("scores") or {}).get(p) is not None
              else float("nan") for p in props] for r in rows],
            dtype=torch.float64,
        )
        pred = torch.nan_to_num(pred, nan=0.0)
        return torch.cat([feats, pred], dim=-1)

    def select(self, index: int) -> None:
        """Pick the batch with BoTorch over the pool; write picks and advance to ``selected``."""
        with self.claim(index, "selected") as todo:
            if todo:
                self._select(index)

    def _select(self, index: int) -> None:
        cfg = self.cfg
        pool = self._pool(index)
        props = cfg.property_names()
        labels = self.store.labels()
        lab_rows = [c for c in self.store.candidates() if c["id"] in labels]
        q = min(cfg.batch_size, len(pool))
        picks: list[tuple[str, float]] = []
        acq_name = cfg.acquisition.kind
        if q > 0 and cfg.acquisition.kind == "random":
            rng = np.random.default_rng(cfg.round_seed(index))
            groups: dict[str, int] = {}
            for i in rng.permutation(len(pool)):
                f = pool[i]["reduced_formula"]
                if cfg.acquisition.diversity == "formula" and f in groups:
                    continue
                groups[f] = i
                picks.append((pool[i]["id"], float("nan")))
                if len(picks) == q:
                    break
        elif q > 0:
            prior = None
            pred = predictor_columns(pool + lab_rows, props)
            if cfg.acquisition.surrogate == "prior_gp" and pred is None:
                log.warning("acquisition.surrogate prior_gp: the scorer gave no finite "
                            "prediction and _std of %s for every candidate; plain GPs this "
                            "round", ", ".join(props))
            if pred is not None and cfg.acquisition.surrogate != "gp":
                x_all, prior = PredictorPrior.standardise(pred)
            else:
                x_all = self._features(pool + lab_rows)
                x_all = FeatureScaler.fit(x_all)(x_all)
            x_pool, x_lab = x_all[: len(pool)], x_all[len(pool):]
            y_lab = torch.tensor(
                [[labels[c["id"]].get(p) if labels[c["id"]].get(p) is not None else float("nan")
                  for p in props] for c in lab_rows],
                dtype=torch.float64,
            ).reshape(len(lab_rows), len(props))
            enough = len(lab_rows) > 0 and all(
                int((~torch.isnan(y_lab[:, k])).sum()) >= cfg.acquisition.min_labels_for_gp
                for k in range(len(props))
            )
            model = None
            if enough:
                try:
                    model = fit_gp_models(x_lab, y_lab, seed=cfg.round_seed(index),
                                          prior=prior)
                    baseline = x_lab
                except Exception as exc:  # noqa: BLE001 - fall back to the scorer's posterior
                    log.warning("GP fit failed (%s); using the scorer's predictions", exc)
                    model = None
            if model is None:
                scale = {o.property: o.scale for o in cfg.objectives}
                mean = torch.tensor(
                    [[(c["scores"] or {}).get(p) if (c["scores"] or {}).get(p) is not None
                      else float("nan") for p in props] for c in pool], dtype=torch.float64)
                std = torch.tensor(
                    [[(c["scores"] or {}).get(f"{p}_std") or scale[p] for p in props]
                     for c in pool], dtype=torch.float64)
                fill = torch.nanmean(mean, 0).nan_to_num(0.0).expand_as(mean)
                std = torch.where(torch.isnan(mean), std * 3, std)
                mean = torch.where(torch.isnan(mean), fill, mean)
                model = PoolEnsembleModel(x_pool, mean, std, seed=cfg.round_seed(index))
                baseline = x_pool
            kind = cfg.acquisition.kind
            groups_l = ([c["reduced_formula"] for c in pool]
                        if cfg.acquisition.diversity == "formula" else None)
            sel = _select_feasible(model, x_pool, q, self.targets, props, baseline,
                                   groups_l, kind, cfg.round_seed(index))
            acq_name = sel.acquisition
            picks = [(pool[i]["id"], v) for i, v in zip(sel.indices, sel.values, strict=True)]
        with self._step_tx(index, "selected") as conn:
            self.store.advance(conn, index, "selected", acquisition=acq_name)
            for rank, (cid, val) in enumerate(picks):
                self.store.update_candidate(
                    conn, cid, selected=True, selected_round=index, rank=rank,
                    acq_value=finite(val),
                )

    # ------------------------------------------------------------------ 5. submit + label
    def selected(self, index: int) -> list[dict]:
        rows = [c for c in self.store.candidates(selected=True) if c["selected_round"] == index]
        return sorted(rows, key=lambda c: c["rank"] if c["rank"] is not None else 0)

    def submit(self, index: int) -> None:
        """Record one ``pending`` submission per selected candidate (before anything is sent)."""
        with self.claim(index, "submitted") as todo:
            if not todo:
                return
            ids = [c["id"] for c in self.selected(index)]
            with self._step_tx(index, "submitted") as conn:
                self.store.advance(conn, index, "submitted")
                self.store.record_submissions(conn, ids, index, self.oracle.name)

    def label(self, index: int, on_send: Callable[[list[str]], None] | None = None) -> bool:
        """Send pending submissions to the oracle and store the labels.

        Synchronous oracles: labels and the ``done`` status of each candidate are committed
        together (``failed`` when the oracle gave no finite value). The lab oracle: requests
        are written and submissions become ``sent``; the round waits for
        :meth:`import_results`. The oracle is only called while holding the round's
        ``labelled`` lease, so concurrent runs never send one batch twice.

        Returns:
            True when every submission of the round is labelled (the round moved to
            ``labelled``), False while waiting for the lab.
        """
        if self._done(index, "labelled"):
            return True
        if not self._done(index, "submitted"):
            raise RuntimeError(f"round {index} is not submitted yet")
        with self.claim(index, "labelled") as todo:
            if todo:
                self._send_pending(index, on_send)
        return self._maybe_labelled(index)

    def _send_pending(self, index: int, on_send: Callable[[list[str]], None] | None) -> None:
        """Call the oracle for the round's pending submissions.

        Each pending submission gets an oracle request id, committed before the call; the rows
        carry it (``request_id``). A crash after the oracle answered but before the labels were
        written leaves the submissions pending with their id, and the next run re-sends that
        same request rather than a new one, so an oracle that keeps its answers by request id
        (idempotency key) does its work for a candidate once.
        """
        oracle = self.oracle
        cands = {c["id"]: c for c in self.selected(index)}
        pending = self.store.submissions(index, status="pending")
        if not pending:
            return
        fresh = [s["candidate_id"] for s in pending if not s.get("request_id")]
        if fresh:
            with self.store.transaction() as conn:
                self.store.assign_request(conn, fresh, f"{self.cfg.name}-r{index:03d}-"
                                                       f"{uuid.uuid4().hex[:12]}")
        groups: dict[str, list[str]] = {}
        for s in self.store.submissions(index, status="pending"):
            groups.setdefault(s["request_id"], []).append(s["candidate_id"])
        for rid, ids in groups.items():
            rows = [{**self._oracle_row(cands[cid]), "request_id": rid} for cid in ids]
            if on_send is not None:
                on_send(ids)
            result = oracle.request(rows, index)
            with self.store.transaction() as conn:
                for cid in ids:
                    if cid not in result:
                        self.store.set_submission(conn, cid, "sent", expect=["pending"])
                        continue
                    if not self.store.set_submission(
                        conn, cid, *self._outcome(result[cid]), expect=["pending"]
                    ):
                        continue  # labelled meanwhile (an import): keep that
                    self.store.add_labels(conn, cid, result[cid], oracle.name)

    @staticmethod
    def _outcome(values: dict[str, float]) -> tuple[str, str | None]:
        """Submission status for an oracle answer: ``done`` with a finite value, else
        ``failed`` (a lab import can still label it)."""
        if any(finite(v) is not None for v in values.values()):
            return "done", None
        return "failed", "the oracle returned no finite value"

    @staticmethod
    def _oracle_row(c: dict) -> dict:
        sc = c.get("scores") or {}
        return {
            "id": c["id"], "cif": c["cif"], "source_id": c["source_id"],
            "formula": c["formula"], "spacegroup": c["spacegroup"],
            "relaxed_cif": sc.get("relaxed_cif"),
        }

    def _maybe_labelled(self, index: int) -> bool:
        subs = self.store.submissions(index)
        if any(s["status"] in ("pending", "sent") for s in subs):
            return False
        if not self._done(index, "labelled"):
            with self._step_tx(index, "labelled") as conn:
                self.store.advance(conn, index, "labelled")
        return True

    def import_results(self, csv_path: str, correct: bool = False,
                       reason: str | None = None) -> ImportReport:
        """Import a lab results CSV (``candidate_id`` + property columns); one transaction.

        A row is accepted only with at least one known, finite value, for a candidate that
        was sent to the oracle; every other row is rejected and named (``errors``). A
        candidate labelled before: the same values are ``unchanged``, values for properties it
        has no label for yet are added (``filled``), different values are rejected unless
        ``correct`` is set, which replaces them (``corrected``). Every write goes to the
        store's ``label_history`` (old value, new value, file and line, ``reason``).

        Raises:
            ResultsFileError: a problem with the whole file (nothing is imported).
        """
        if isinstance(self._oracle, LabOracle):
            lab = self._oracle
        else:
            lab = LabOracle(self.cfg.work_path() / "outbox",
                            self.cfg.oracle.properties or self.cfg.property_names())
        parsed: ResultsFile = lab.read_results(csv_path)
        rep = ImportReport(errors=list(parsed.errors))
        touched: set[int] = set()
        ids = [r.candidate_id for r in parsed.rows]
        why = f"; {reason}" if reason else ""
        with self.store.transaction() as conn:
            known, subs, have = self.store.import_state(conn, ids)
            for row in parsed.rows:
                cid, where = row.candidate_id, f"{csv_path}:{row.line}: {row.candidate_id}"
                s = subs.get(cid)
                if cid not in known:
                    rep.errors.append(f"{where}: no such candidate in campaign "
                                      f"{self.cfg.name!r}")
                    continue
                if s is None:
                    rep.errors.append(f"{where}: never sent to the oracle (not selected)")
                    continue
                old = {k: v for k, v in have.get(cid, {}).items() if v is not None}
                differ = {k: v for k, v in row.values.items() if k in old and old[k] != v}
                if differ and not correct:
                    rep.errors.append(where + ": already labelled " + ", ".join(
                        f"{k}={old[k]:g} (file: {v:g})" for k, v in differ.items())
                        + "; re-import with --correct to replace")
                    continue
                new = {k: v for k, v in row.values.items() if k not in old}
                if not new and not differ:
                    rep.unchanged += 1
                    continue
                first = s["status"] != "done"
                action = "import" if first else "fill"
                src = f"{csv_path} line {row.line}{why}"
                for k, v in new.items():
                    self.store.write_label(conn, cid, k, v, "lab", action, src)
                for k, v in differ.items():
                    self.store.write_label(conn, cid, k, v, "lab", "correct", src)
                if first:
                    self.store.set_submission(conn, cid, "done", detail=f"imported {src}"[:300])
                    touched.add(s["round_index"])
                    rep.accepted += 1
                elif differ:
                    rep.corrected += 1
                else:
                    rep.filled += 1
        rep.rejected = len(rep.errors)
        for r in sorted(touched):
            self._maybe_labelled(r)
        return rep

    # ------------------------------------------------------------------ 6. update
    def update(self, index: int) -> None:
        """Active learning: retrain the scorer's predictors on all oracle labels so far."""
        with self.claim(index, "updated") as todo:
            if todo:
                self._update(index)

    def _update(self, index: int) -> None:
        from pymatgen.core import Structure

        labels = self.store.labels()
        rows = [c for c in self.store.candidates() if c["id"] in labels]
        structs = [Structure.from_str(c["cif"], fmt="cif") for c in rows]
        version = None
        if rows:
            version = self.scorer.update(structs, [labels[c["id"]] for c in rows])
            save_scorer_state(self.scorer, self._scorer_state_dir(), index)  # before recording
        with self._step_tx(index, "updated") as conn:
            fields = {"model_version": str(version)} if version else {}
            self.store.advance(conn, index, "updated", **fields)
        self._scorer_round = index  # the state in memory is the one just recorded

    # ------------------------------------------------------------------ 7. report
    def is_hit(self, lab: dict[str, float | None]) -> bool:
        for t in self.targets:
            if t.minimum is None and t.maximum is None:
                continue
            v = lab.get(t.name)
            if v is None or (t.minimum is not None and v < t.minimum) or (
                t.maximum is not None and v > t.maximum
            ):
                return False
        return True

    def metrics(self, index: int) -> dict[str, Any]:
        labels = self.store.labels()
        batch = self.selected(index)
        suspects = [c for c in batch if is_suspect_candidate(c)]
        # the MLIP cannot vouch for a suspect: without an oracle label it does not count as
        # stable (round_metrics falls back to the scorer's e_above_hull for unlabelled ones)
        drop = {c["id"] for c in suspects if c["id"] not in labels}
        batch = [c if c["id"] not in drop else
                 {**c, "scores": {k: v for k, v in (c.get("scores") or {}).items()
                                  if k != "e_above_hull"}} for c in batch]
        m = round_metrics(batch, labels, self.cfg.property_names(),
                          self.is_hit, self.cfg.guards)
        m["suspects"] = len(suspects)
        m["suspects_unlabelled"] = len(drop)
        cands = self.store.candidates(index)
        m["generated"] = len(cands)
        m["invalid"] = sum(c["status"] == "invalid" for c in cands)
        m["duplicates"] = sum(c["status"] == "duplicate" for c in cands)
        m["scored"] = sum(c["status"] == "scored" for c in cands)
        m["cumulative_hits"] = int(sum(self.is_hit(v) for v in labels.values()))
        m["cumulative_labelled"] = len(labels)
        return m

    def report(self, index: int) -> dict[str, Any]:
        with self.claim(index, "reported") as todo:
            if todo:
                m = self.metrics(index)
                with self._step_tx(index, "reported") as conn:
                    self.store.advance(conn, index, "reported", metrics=m)
        return self.store.round(index)["metrics"] or {}

    # ------------------------------------------------------------------ driver
    #: What :meth:`run_round` does, step by step (progress descriptions).
    _ROUND_STEPS = ("generating", "checking validity and duplicates", "scoring", "selecting",
                    "submitting", "labelling", "learning from the labels", "reporting")

    def _note(self, index: int, what: str) -> None:
        """Describe the step under way on the progress of :meth:`run` (if any)."""
        if self._progress is not None:
            self._progress.update(desc=f"campaign {self.cfg.name}, round {index}: {what}")

    def run_round(self, index: int) -> str:
        """Run (or resume) round ``index`` to the end, or until it waits for the lab.

        Returns:
            The round's status afterwards (``reported`` or ``submitted`` while waiting).
        """
        bar = self._progress
        for what, step in zip(self._ROUND_STEPS[:5], (
                self.generate, self.dedup, self.score, self.select, self.submit), strict=True):
            self._note(index, what)
            step(index)
            if bar is not None:
                bar.advance()
        self._note(index, self._ROUND_STEPS[5])
        if not self.label(index):
            return self.status(index)  # type: ignore[return-value]
        for what, step in zip(self._ROUND_STEPS[5:], (None, self.update, self.report),
                              strict=True):
            if step is not None:
                self._note(index, what)
                step(index)
            if bar is not None:
                bar.advance()
        return "reported"

    def run(self, rounds: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
        """Run rounds until ``rounds`` (default ``cfg.rounds``) are reported; resumes.

        Args:
            rounds: total rounds wanted.
            progress: show progress on stderr (:class:`matgen._progress.Progress`: a bar on a
                terminal, the step under way and plain periodic lines otherwise).

        Raises:
            CampaignConfigError: the objectives do not fit the scorer / oracle (before any
                work).
        """
        from matgen._progress import Progress

        self.check()
        total = rounds if rounds is not None else self.cfg.rounds
        todo = max(0, total - self.next_round()) * len(self._ROUND_STEPS)
        with Progress(f"campaign {self.cfg.name}", total=todo, unit="steps",
                      enabled=progress and todo > 0) as bar:
            self._progress = bar if progress else None
            try:
                while (i := self.next_round()) < total:
                    if self.run_round(i) != "reported":
                        log.info("round %d waits for lab results (matgen campaign "
                                 "import-results)", i)
                        break
            finally:
                self._progress = None
                bar.update(desc=f"campaign {self.cfg.name}", announce=False)
        return self.store.summary()["rounds"]


assert STEPS[-1] == "reported"

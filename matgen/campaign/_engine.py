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
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from matgen.acquisition import (
    FeatureScaler,
    PoolEnsembleModel,
    Target,
    crystal_features,
    fit_gp_models,
    select,
)
from matgen.campaign._components import (
    DatasetGenerator,
    DatasetScorer,
    Generator,
    ModelGenerator,
    Scorer,
    SurrogateScorer,
    finite,
)
from matgen.campaign._config import CampaignConfig
from matgen.campaign._metrics import round_metrics
from matgen.campaign._oracles import DatasetOracle, LabOracle, MLIPOracle, Oracle
from matgen.campaign._store import STEPS, CampaignStore, StepConflict
from matgen.crystal import CrystalBatch

log = logging.getLogger("matgen.campaign")


# ---------------------------------------------------------------------------------- factories
def build_generator(cfg: CampaignConfig) -> Generator:
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
    return SurrogateScorer(relax=s.relax, relax_steps=s.relax_steps, fmax=s.fmax)


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
def _describe(structure) -> tuple[str, str, str | None]:
    """(formula, reduced formula, space group symbol or None)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    comp = structure.composition
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

    Args:
        cfg: the campaign config.
        generator, scorer, oracle: optional components overriding the config's.
        store: optional store (default: ``cfg.database_url()``).
    """

    def __init__(
        self,
        cfg: CampaignConfig,
        generator: Generator | None = None,
        scorer: Scorer | None = None,
        oracle: Oracle | None = None,
        store: CampaignStore | None = None,
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
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ components
    @property
    def generator(self) -> Generator:
        with self._lock:  # parallel chunks of one process share one loaded model
            if self._generator is None:
                self._generator = build_generator(self.cfg)
        return self._generator

    @property
    def scorer(self) -> Scorer:
        with self._lock:
            if self._scorer is None:
                self._scorer = build_scorer(self.cfg)
        return self._scorer

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
        if self._done(index, "generated"):
            return
        cond = self.conditions()
        chunks = [self.generate_chunk(n, seed, cond) for _, n, seed in self.chunk_plan(index)]
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
        if self._done(index, "deduped"):
            return
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
        if self._done(index, "scored"):
            return
        plan = self.score_plan(index)
        seed = self.cfg.round_seed(index)
        scores = [self.score_chunk(rows, seed + 7 * k) for k, rows in enumerate(plan)]
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
        if self._done(index, "selected"):
            return
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
            x_all = self._features(pool + lab_rows)
            scaler = FeatureScaler.fit(x_all)
            x_pool = scaler(x_all[: len(pool)])
            x_lab = scaler(x_all[len(pool):])
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
                    model = fit_gp_models(x_lab, y_lab, seed=cfg.round_seed(index))
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
            sel = select(model, x_pool, q, self.targets, props, baseline, groups=groups_l,
                         kind=kind, seed=cfg.round_seed(index))
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
        if self._done(index, "submitted"):
            return
        ids = [c["id"] for c in self.selected(index)]
        with self._step_tx(index, "submitted") as conn:
            self.store.advance(conn, index, "submitted")
            self.store.record_submissions(conn, ids, index, self.oracle.name)

    def label(self, index: int, on_send: Callable[[list[str]], None] | None = None) -> bool:
        """Send pending submissions to the oracle and store the labels.

        Synchronous oracles: labels and the ``done`` status of each candidate are committed
        together. The lab oracle: requests are written and submissions become ``sent``; the
        round waits for :meth:`import_results`.

        Returns:
            True when every submission of the round is labelled (the round moved to
            ``labelled``), False while waiting for the lab.
        """
        if self._done(index, "labelled"):
            return True
        if not self._done(index, "submitted"):
            raise RuntimeError(f"round {index} is not submitted yet")
        oracle = self.oracle
        cands = {c["id"]: c for c in self.selected(index)}
        pending = [s["candidate_id"] for s in self.store.submissions(index, status="pending")]
        if pending:
            rows = [self._oracle_row(cands[cid]) for cid in pending]
            if on_send is not None:
                on_send(pending)
            result = oracle.request(rows, index)
            with self.store.transaction() as conn:
                for cid in pending:
                    if cid in result:
                        self.store.add_labels(conn, cid, result[cid], oracle.name)
                        self.store.set_submission(conn, cid, "done")
                    else:
                        self.store.set_submission(conn, cid, "sent")
        return self._maybe_labelled(index)

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
        if self.status(index) == "submitted":
            with self._step_tx(index, "labelled") as conn:
                self.store.advance(conn, index, "labelled")
        return True

    def import_results(self, csv_path: str) -> dict[str, int]:
        """Import a lab results CSV (``candidate_id`` + property columns).

        Rows for unknown candidates or candidates never sent are rejected (counted); labels of
        one file are committed in one transaction.
        """
        if not isinstance(self.oracle, LabOracle):
            lab = LabOracle(self.cfg.work_path() / "outbox", self.cfg.property_names())
        else:
            lab = self.oracle
        results = lab.read_results(csv_path)
        subs = {s["candidate_id"]: s for s in self.store.submissions()}
        accepted, rejected = 0, 0
        rounds_touched = set()
        with self.store.transaction() as conn:
            for cid, vals in results.items():
                s = subs.get(cid)
                if s is None or s["status"] not in ("sent", "pending"):
                    rejected += 1
                    continue
                self.store.add_labels(conn, cid, vals, "lab")
                self.store.set_submission(conn, cid, "done")
                rounds_touched.add(s["round_index"])
                accepted += 1
        for r in rounds_touched:
            self._maybe_labelled(r)
        return {"accepted": accepted, "rejected": rejected}

    # ------------------------------------------------------------------ 6. update
    def update(self, index: int) -> None:
        """Active learning: retrain the scorer's predictors on all oracle labels so far."""
        if self._done(index, "updated"):
            return
        from pymatgen.core import Structure

        labels = self.store.labels()
        rows = [c for c in self.store.candidates() if c["id"] in labels]
        structs = [Structure.from_str(c["cif"], fmt="cif") for c in rows]
        version = None
        if rows:
            version = self.scorer.update(structs, [labels[c["id"]] for c in rows])
        with self._step_tx(index, "updated") as conn:
            fields = {"model_version": str(version)} if version else {}
            self.store.advance(conn, index, "updated", **fields)

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
        m = round_metrics(self.selected(index), labels, self.cfg.property_names(),
                          self.is_hit, self.cfg.guards)
        cands = self.store.candidates(index)
        m["generated"] = len(cands)
        m["invalid"] = sum(c["status"] == "invalid" for c in cands)
        m["duplicates"] = sum(c["status"] == "duplicate" for c in cands)
        m["scored"] = sum(c["status"] == "scored" for c in cands)
        m["cumulative_hits"] = int(sum(self.is_hit(v) for v in labels.values()))
        m["cumulative_labelled"] = len(labels)
        return m

    def report(self, index: int) -> dict[str, Any]:
        if self._done(index, "reported"):
            return self.store.round(index)["metrics"] or {}
        m = self.metrics(index)
        with self._step_tx(index, "reported") as conn:
            self.store.advance(conn, index, "reported", metrics=m)
        return m

    # ------------------------------------------------------------------ driver
    def run_round(self, index: int) -> str:
        """Run (or resume) round ``index`` to the end, or until it waits for the lab.

        Returns:
            The round's status afterwards (``reported`` or ``submitted`` while waiting).
        """
        self.generate(index)
        self.dedup(index)
        self.score(index)
        self.select(index)
        self.submit(index)
        if not self.label(index):
            return self.status(index)  # type: ignore[return-value]
        self.update(index)
        self.report(index)
        return "reported"

    def run(self, rounds: int | None = None) -> list[dict[str, Any]]:
        """Run rounds until ``rounds`` (default ``cfg.rounds``) are reported; resumes."""
        total = rounds if rounds is not None else self.cfg.rounds
        while (i := self.next_round()) < total:
            if self.run_round(i) != "reported":
                log.info("round %d waits for lab results (matgen campaign import-results)", i)
                break
        return self.store.summary()["rounds"]


assert STEPS[-1] == "reported"

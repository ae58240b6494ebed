"""One campaign round as idempotent, atomically committed steps (no Prefect here).

generate -> dedup -> score -> select -> submit -> label -> update -> report
(:data:`ROUND_PLAN`). Every step first checks the round's status in the store and returns at
once when it has already been done; otherwise it computes, then writes its outputs and advances
the status in one transaction. The heavy parts of ``generate`` and ``score`` are pure functions
of their inputs (:meth:`Campaign.generate_chunk`, :meth:`Campaign.score_chunk`) over the jobs of
:meth:`Campaign.generation_jobs` / :meth:`Campaign.scoring_jobs` (which hold every seed), so
orchestrators can shard, cache and retry them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from matgen.acquisition import Target
from matgen.campaign._checks import check_config, settle_config
from matgen.campaign._components import (
    CandidateGenerator,
    DatasetGenerator,
    Scorer,
    build_generator,
    build_oracle,
    build_scorer,
    finite,
    load_scorer_state,
    save_scorer_state,
)
from matgen.campaign._config import CampaignConfig
from matgen.campaign._finetune import current_generator, finetune_step, round_generator_version
from matgen.campaign._generation import (
    candidate_rows,
    chunk_plan,
    generated_rows,
    generation_conditions,
)
from matgen.campaign._labelling import ImportReport, import_rows, send_pending
from matgen.campaign._metrics import campaign_metrics, inside_windows, is_suspect_candidate
from matgen.campaign._novelty import novelty_verdicts, training_formulas
from matgen.campaign._oracles import LabOracle, Oracle
from matgen.campaign._plan import ROUND_PLAN, ChunkRunner, RoundStep
from matgen.campaign._selection import choose_batch, predictor_columns
from matgen.campaign._store import STEPS, CampaignStore, CandidateRow, StepConflict
from matgen.crystal import CrystalBatch

__all__ = [
    "ROUND_PLAN",
    "Campaign",
    "ChunkRunner",
    "ImportReport",
    "RoundStep",
    "build_generator",
    "build_oracle",
    "build_scorer",
    "is_suspect_candidate",
    "predictor_columns",
]

log = logging.getLogger("matgen.campaign")


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
    finds the step done. A round runs the steps of :data:`ROUND_PLAN` in order
    (:meth:`run_round`); an orchestrator passes its own step functions and a chunk runner
    instead of re-implementing the round.

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
        #: a :class:`matgen._progress.Progress` the round's steps are shown on (set by run()
        #: and by the flows while they show one)
        self.progress: Any = None
        try:
            self.config_version = settle_config(self.store, cfg, self.next_round,
                                                accept_config_change)
        except BaseException:
            if store is None:  # opened here: closed here (a refused config leaves none open)
                self.store.dispose()
            raise

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
        with self._lock:  # one loaded model per version, shared by a process's parallel chunks
            self._generator = current_generator(self, self._generator)
        return self._generator

    @property
    def scorer(self) -> Scorer:
        """The scorer, with the learning state of the newest round the store records as
        updated (saved by :meth:`_update`): a resumed run, or one that waited while another
        run updated, scores as an uninterrupted run would."""
        with self._lock:
            if self._scorer is None:
                self._scorer = build_scorer(self.cfg)
            updated = [
                r["index"]
                for r in self.store.rounds()
                if STEPS.index(r["status"]) >= STEPS.index("updated")
            ]
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

    def done(self, index: int, step: str) -> bool:
        """Whether round ``index`` has completed ``step`` (a status of :data:`STEPS`)."""
        return self.store.status_reached(index, step)

    @contextmanager
    def claim(self, index: int, step: str):
        """Hold the store's lease on ``step`` of round ``index`` for the ``with`` block.

        Yields True when this worker must do the step, False when it is done already (or got
        done by another worker while this one waited for its lease). A crashed holder's claim
        is taken over (at once on this host, after ``lease_seconds`` elsewhere).
        """
        if self.done(index, step):
            yield False
            return
        with self.store.hold(
            f"round{index}:{step}", ttl=self.cfg.lease_seconds, stop=lambda: self.done(index, step)
        ) as held:
            yield held and not self.done(index, step)

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
            if not self.done(index, step):
                raise
            log.info("round %d: step %r was committed by another worker", index, step)

    # ------------------------------------------------------------------ 1. generate
    def conditions(self) -> dict[str, float]:
        """Generation conditions (see :func:`generation_conditions`)."""
        return generation_conditions(self.cfg, self.store.labels())

    def chunk_plan(self, index: int) -> list[tuple[int, int, int]]:
        """``(chunk, n, seed)`` of the generation chunks of round ``index``."""
        return chunk_plan(self.cfg, index)

    def generation_jobs(self, index: int) -> list[tuple[int, int, dict[str, Any]]]:
        """``(n, seed, conditions)`` of each generation chunk of round ``index``."""
        cond = self.conditions()
        return [(n, seed, cond) for _, n, seed in self.chunk_plan(index)]

    def generate_chunk(self, n: int, seed: int, conditions: dict[str, Any]) -> list[dict]:
        """Generate ``n`` crystals (pure given the seed): rows ``{source_id, cif}``."""
        gen = self.generator
        if isinstance(gen, DatasetGenerator):
            gen.exclude([c.source_id for c in self.store.candidates() if c.source_id])
        chemsys = self.cfg.generator.chemsys or None
        return generated_rows(gen(n, conditions, chemsys, seed))

    def commit_generated(self, index: int, chunks: Sequence[Sequence[dict]]) -> int:
        """Write the generated candidates and advance to ``generated`` (one transaction)."""
        rows = candidate_rows(self.cfg.name, index, chunks)
        version = round_generator_version(self, index)  # before the write lock is taken
        with self._step_tx(index, "generated") as conn:
            # first: a lost race writes nothing
            self.store.advance(conn, index, "generated", generator_version=version)
            self.store.add_candidates(conn, rows)
        return len(rows)

    def generate(self, index: int, run_chunks: ChunkRunner | None = None) -> None:
        """Generate round ``index``'s pool (chunks run by ``run_chunks``, default here)."""
        self.store.ensure_round(index, self.cfg.round_seed(index))
        finetune_step(self, index)  # generator.finetune: learn from the labels first, when due
        with self.claim(index, "generated") as todo:
            if todo:
                run = run_chunks or self._run_here(index)
                self.commit_generated(index, run("generate", self.generation_jobs(index)))

    def _run_here(self, index: int) -> ChunkRunner:
        """Run chunk jobs one after the other in this process, shown on the progress."""

        def run(kind: str, jobs: Sequence[tuple]) -> list:
            work = self.generate_chunk if kind == "generate" else self.score_chunk
            what = "generating" if kind == "generate" else "scoring"
            out = []
            for k, job in enumerate(jobs):
                self._note(index, f"{what}, chunk {k + 1}/{len(jobs)}")
                out.append(work(*job))
            return out

        return run

    # ------------------------------------------------------------------ 2. dedup
    def dedup(self, index: int) -> None:
        """Mark invalid and duplicate candidates (vs training data, earlier rounds, this round)."""
        with self.claim(index, "deduped") as todo:
            if not todo:
                return
            if self._train_index is None:
                self._train_index = training_formulas(self.cfg.train_csv)
            earlier = [
                c for c in self.store.candidates() if c.round_index < index and c.status == "scored"
            ]
            verdicts = novelty_verdicts(self.store.candidates(index), earlier, self._train_index)
            with self._step_tx(index, "deduped") as conn:
                self.store.advance(conn, index, "deduped")
                for cid, status, reason in verdicts:
                    self.store.update_candidate(conn, cid, status=status, reason=reason)

    # ------------------------------------------------------------------ 3. score
    def scoring_jobs(self, index: int) -> list[tuple[list[dict], int]]:
        """``(rows, seed)`` of each scoring chunk of round ``index``."""
        seed = self.cfg.round_seed(index)
        return [(rows, seed + 7 * k) for k, rows in enumerate(self.score_plan(index))]

    def score_plan(self, index: int) -> list[list[dict]]:
        """Chunks of candidate rows (``id``, ``cif``, ``source_id``) to score."""
        cands = [c for c in self.store.candidates(index) if c.status == "generated"]
        size = max(1, self.cfg.scorer.chunk_size)
        rows = [{"id": c.id, "cif": c.cif, "source_id": c.source_id} for c in cands]
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

    def commit_scores(
        self, index: int, chunks: Sequence[Sequence[dict]], scores: Sequence[Sequence[dict]]
    ) -> None:
        """Write scores and advance to ``scored`` (one transaction)."""
        sc = self.scorer
        with self._step_tx(index, "scored") as conn:
            self.store.advance(
                conn,
                index,
                "scored",
                model_version=str(getattr(sc, "model_version", "?")),
                hull_version=str(getattr(sc, "hull_version", "?")),
            )
            for rows, res in zip(chunks, scores, strict=True):
                for r, s in zip(rows, res, strict=True):
                    self.store.update_candidate(conn, r["id"], status="scored", scores=s)

    def score(self, index: int, run_chunks: ChunkRunner | None = None) -> None:
        """Score round ``index``'s valid new candidates (chunks run by ``run_chunks``)."""
        with self.claim(index, "scored") as todo:
            if todo:
                jobs = self.scoring_jobs(index)
                scores = (run_chunks or self._run_here(index))("score", jobs)
                self.commit_scores(index, [rows for rows, _ in jobs], scores)

    # ------------------------------------------------------------------ 4. select
    def _pool(self, index: int) -> list[CandidateRow]:
        submitted = {s["candidate_id"] for s in self.store.submissions()}
        rows = [
            c
            for c in self.store.candidates(status="scored")
            if not c.selected and c.id not in submitted
        ]
        if not self.cfg.acquisition.include_untested_from_earlier_rounds:
            rows = [c for c in rows if c.round_index == index]
        return rows

    def select(self, index: int) -> None:
        """Pick the batch with BoTorch over the pool; write picks and advance to ``selected``."""
        with self.claim(index, "selected") as todo:
            if not todo:
                return
            pool = self._pool(index)
            labels = self.store.labels()
            labelled = [c for c in self.store.candidates() if c.id in labels]
            sel = choose_batch(
                self.cfg, self.targets, pool, labelled, labels, self.cfg.round_seed(index)
            )
            with self._step_tx(index, "selected") as conn:
                self.store.advance(conn, index, "selected", acquisition=sel.acquisition)
                for rank, (i, val) in enumerate(zip(sel.indices, sel.values, strict=True)):
                    self.store.update_candidate(
                        conn,
                        pool[i].id,
                        selected=True,
                        selected_round=index,
                        rank=rank,
                        acq_value=finite(val),
                    )

    # ------------------------------------------------------------------ 5. submit + label
    def selected(self, index: int) -> list[CandidateRow]:
        rows = [c for c in self.store.candidates(selected=True) if c.selected_round == index]
        return sorted(rows, key=lambda c: c.rank if c.rank is not None else 0)

    def submit(self, index: int) -> None:
        """Record one ``pending`` submission per selected candidate (before anything is sent)."""
        with self.claim(index, "submitted") as todo:
            if not todo:
                return
            ids = [c.id for c in self.selected(index)]
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
        if self.done(index, "labelled"):
            return True
        if not self.done(index, "submitted"):
            raise RuntimeError(f"round {index} is not submitted yet")
        with self.claim(index, "labelled") as todo:
            if todo:
                cands = {c.id: c for c in self.selected(index)}
                prefix = f"{self.cfg.name}-r{index:03d}-"
                send_pending(self.store, self.oracle, cands, index, prefix, on_send)
        return self._maybe_labelled(index)

    def _maybe_labelled(self, index: int) -> bool:
        subs = self.store.submissions(index)
        if any(s["status"] in ("pending", "sent") for s in subs):
            return False
        if not self.done(index, "labelled"):
            with self._step_tx(index, "labelled") as conn:
                self.store.advance(conn, index, "labelled")
        return True

    def import_results(
        self, csv_path: str, correct: bool = False, reason: str | None = None
    ) -> ImportReport:
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
            props = self.cfg.oracle.properties or self.cfg.property_names()
            lab = LabOracle(self.cfg.work_path() / "outbox", props)
        parsed = lab.read_results(csv_path)
        rep, touched = import_rows(self.store, parsed, csv_path, self.cfg.name, correct, reason)
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
        rows = [c for c in self.store.candidates() if c.id in labels]
        structs = [Structure.from_str(c.cif, fmt="cif") for c in rows]
        version = None
        if rows:
            version = self.scorer.update(structs, [labels[c.id] for c in rows])
            save_scorer_state(self.scorer, self._scorer_state_dir(), index)  # before recording
        with self._step_tx(index, "updated") as conn:
            fields = {"model_version": str(version)} if version else {}
            self.store.advance(conn, index, "updated", **fields)
        self._scorer_round = index  # the state in memory is the one just recorded

    # ------------------------------------------------------------------ 7. report
    def is_hit(self, lab: Mapping[str, float | None]) -> bool:
        """Whether labels put a candidate inside every window of the objectives."""
        return inside_windows(self.targets, lab)

    def metrics(self, index: int) -> dict[str, Any]:
        """The guards and counts of round ``index`` (see :func:`campaign_metrics`)."""
        return campaign_metrics(self.store, index, self.selected(index), self.cfg, self.is_hit)

    def report(self, index: int) -> dict[str, Any]:
        with self.claim(index, "reported") as todo:
            if todo:
                m = self.metrics(index)
                with self._step_tx(index, "reported") as conn:
                    self.store.advance(conn, index, "reported", metrics=m)
        return self.store.round(index)["metrics"] or {}

    # ------------------------------------------------------------------ driver
    def _note(self, index: int, what: str) -> None:
        """Describe the step under way on :attr:`progress` (if any)."""
        if self.progress is not None:
            self.progress.update(desc=f"campaign {self.cfg.name}, round {index}: {what}")

    def run_round(
        self,
        index: int,
        steps: Mapping[str, Callable[[int], Any]] | None = None,
        run_chunks: ChunkRunner | None = None,
    ) -> str:
        """Run (or resume) round ``index`` to the end, or until it waits for the lab.

        The steps of :data:`ROUND_PLAN` run in order; a step already done is skipped (the
        report is always made: it returns the stored metrics).

        Args:
            index: the round.
            steps: step functions ``f(index)`` by status, replacing this campaign's methods
                (an orchestrator's tasks); ``labelled`` must return whether the round is
                labelled.
            run_chunks: runs the generation and scoring chunks (default: here, in order).

        Returns:
            The round's status afterwards (``reported`` or ``submitted`` while waiting).
        """
        chunked: dict[str, Callable[[int], Any]] = {}
        if run_chunks is not None:
            chunked = {
                "generated": lambda i: self.generate(i, run_chunks),
                "scored": lambda i: self.score(i, run_chunks),
            }
        do: dict[str, Callable[[int], Any]] = {
            "generated": self.generate,
            "deduped": self.dedup,
            "scored": self.score,
            "selected": self.select,
            "submitted": self.submit,
            "labelled": self.label,
            "updated": self.update,
            "reported": self.report,
            **chunked,
            **(steps or {}),
        }
        self.store.ensure_round(index, self.cfg.round_seed(index))
        for step in ROUND_PLAN:
            self._note(index, step.description)
            if step.status == "reported" or not self.done(index, step.status):
                finished = do[step.status](index)
                if step.status == "labelled" and not finished:
                    return self.status(index)  # type: ignore[return-value]
            if self.progress is not None:
                self.progress.advance()
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
        todo = max(0, total - self.next_round()) * len(ROUND_PLAN)
        with Progress(
            f"campaign {self.cfg.name}", total=todo, unit="steps", enabled=progress and todo > 0
        ) as bar:
            self.progress = bar if progress else None
            try:
                while (i := self.next_round()) < total:
                    if self.run_round(i) != "reported":
                        log.info(
                            "round %d waits for lab results (matgen campaign import-results)", i
                        )
                        break
            finally:
                self.progress = None
                bar.update(desc=f"campaign {self.cfg.name}", announce=False)
        return self.store.summary()["rounds"]

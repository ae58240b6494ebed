"""The plan of a round: its steps in order and how an orchestrator hands chunk work over."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from matgen.campaign._schema import STEPS


@dataclass(frozen=True)
class RoundStep:
    """One step of a round: the status (of :data:`STEPS`) it reaches, and what progress shows
    while it runs."""

    status: str
    description: str


#: The steps of a round, in order (:meth:`Campaign.run_round`).
ROUND_PLAN: tuple[RoundStep, ...] = (
    RoundStep("generated", "generating"),
    RoundStep("deduped", "checking validity and duplicates"),
    RoundStep("scored", "scoring"),
    RoundStep("selected", "selecting"),
    RoundStep("submitted", "submitting"),
    RoundStep("labelled", "labelling"),
    RoundStep("updated", "learning from the labels"),
    RoundStep("reported", "reporting"),
)
assert tuple(s.status for s in ROUND_PLAN) == STEPS[1:]

#: ``run(kind, jobs) -> results``: runs the chunk jobs of a step (``kind`` is ``"generate"``
#: with :meth:`Campaign.generation_jobs`, or ``"score"`` with :meth:`Campaign.scoring_jobs`),
#: one result per job in order.
ChunkRunner = Callable[[str, Sequence[tuple]], list]

"""Prefect orchestration of discovery campaigns (the engine is :class:`matgen.campaign.Campaign`).

One round is a set of tasks: generation chunks and scoring chunks (and, with the DFT oracle, one
calculation per selected candidate) run in parallel on the task runner (threads, or Ray via
prefect-ray) and are retried on transient failures; scoring chunks
are cached by their inputs (config digest, candidate rows, seed, and the scorer's identity: its
learning state and a fingerprint of matgen's code, shipped predictor weights and MLIP packages,
so a result of other code or weights is never read back). Models are loaded inside the
tasks (a per-process cache of :class:`Campaign` objects built from the config path), never
passed as arguments. Cached scoring results are persisted as JSON (data only: nothing read back
from the result store can execute code). Errors that do not heal (a missing or damaged model,
bad input, an unreadable state database) are not retried. Each committed step is idempotent, so a flow run that crashes resumes from
the state store when run again. Every round publishes a markdown and a table artifact.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.task_runners import ThreadPoolTaskRunner

from matgen.campaign import (
    ROUND_PLAN,
    Campaign,
    CampaignConfig,
    ChunkRunner,
    export_campaign,
    load_config,
)
from matgen_flows._server import guard_ephemeral_server

_CAMPAIGNS: dict[tuple[str, str], Campaign] = {}
_LOCK = threading.Lock()


def campaign_for(config_path: str) -> Campaign:
    """The process-wide :class:`Campaign` of a config file (components load lazily, once)."""
    cfg = load_config(config_path)
    key = (str(Path(config_path).resolve()), cfg.digest())
    with _LOCK:
        if key not in _CAMPAIGNS:
            _CAMPAIGNS[key] = Campaign(cfg)
        return _CAMPAIGNS[key]


def build_task_runner(cfg: CampaignConfig):
    """The Prefect task runner named by ``cfg.task_runner``.

    ``threads``: :class:`ThreadPoolTaskRunner`; ``ray``: ``prefect_ray.RayTaskRunner`` on the
    cluster at ``address`` or on a new local cluster with ``num_workers`` CPUs.
    """
    tr = cfg.task_runner
    if tr.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=tr.max_workers)
    try:
        from prefect_ray import RayTaskRunner
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise RuntimeError(
            "task_runner.kind: ray needs prefect-ray: pip install 'matgen[ray]'"
        ) from exc
    if tr.address:
        return RayTaskRunner(address=tr.address)
    return RayTaskRunner(
        init_kwargs={"num_cpus": tr.num_workers, "include_dashboard": False, "log_to_driver": False}
    )


def _resources(cfg: CampaignConfig):
    """Ray resources of the generation / scoring chunks (a no-op with threads)."""
    if cfg.task_runner.kind != "ray":
        return contextlib.nullcontext()
    from prefect_ray.context import remote_options

    return remote_options(
        num_cpus=cfg.task_runner.cpus_per_task, num_gpus=cfg.task_runner.gpus_per_task
    )


# ---------------------------------------------------------------------------------- tasks
def _transient(task, task_run, state) -> bool:
    """Retry everything except a missing or damaged model, bad input or an unreadable state
    database (those do not heal)."""
    from matgen.campaign import MissingModelError, StoreError
    from matgen.models import CheckpointError

    try:
        state.result()
    except (MissingModelError, CheckpointError, StoreError, ValueError):
        return False
    except Exception:  # noqa: BLE001 - anything else may be transient
        return True
    return True


@task(retries=2, retry_delay_seconds=1, retry_condition_fn=_transient)
def generate_chunk(config_path: str, n: int, seed: int, conditions: dict[str, float]) -> list:
    """Generate ``n`` candidates (model loaded here, in the worker)."""
    return campaign_for(config_path).generate_chunk(n, seed, conditions)


@task(
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_transient,
    cache_policy=INPUTS + TASK_SOURCE,
    cache_expiration=timedelta(days=30),
    persist_result=True,
    result_serializer="json",  # data only, never cloudpickle (read back from a cache folder)
)
def score_chunk(config_path: str, config_digest: str, scorer_key: str, rows: list[dict],
                seed: int) -> list:
    """Relax and score candidate rows; cached on (config digest, scorer key, rows, seed)."""
    return campaign_for(config_path).score_chunk(rows, seed)


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A digest of what scoring runs besides the config: matgen's source files, the shipped
    predictor weights and the installed MLIP packages' versions. Part of the scoring cache
    key: before 2026-12-06 a rerun of the demo read back scores of older code (band gaps
    below 0 that the scorer no longer gives)."""
    from importlib import metadata

    import matgen

    root = Path(matgen.__file__).resolve().parent
    h = hashlib.sha256()
    files = sorted(root.rglob("*.py")) + sorted((root / "assets" / "predictors").rglob("*"))
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    for dist in ("chgnet", "sevenn", "torch", "pymatgen"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            h.update(f"{dist}={metadata.version(dist)}".encode())
    return h.hexdigest()[:16]


def scorer_key(camp: Campaign) -> str:
    """The scorer's identity for the scoring cache: its model version (MLIP, predictors, number
    of learning updates) and :func:`code_fingerprint`."""
    return f"{camp.scorer.model_version}@{code_fingerprint()}"


@task
def dedup(config_path: str, index: int) -> None:
    campaign_for(config_path).dedup(index)


@task
def select_batch(config_path: str, index: int) -> None:
    campaign_for(config_path).select(index)


@task
def submit(config_path: str, index: int) -> None:
    campaign_for(config_path).submit(index)


@task(retries=3, retry_delay_seconds=2, retry_condition_fn=_transient)
def label(config_path: str, index: int) -> bool:
    """Ask the oracle for labels (retried: oracles are remote and flaky)."""
    return campaign_for(config_path).label(index)


@task(retries=1, retry_delay_seconds=1, retry_condition_fn=_transient)
def dft_candidate(config_path: str, row: dict) -> dict:
    """DFT-verify one candidate (``oracle: {kind: dft}``): GPAW in its own worker process,
    every calculation cached in ``<work_dir>/dft_cache``, so a retry or a resumed campaign
    takes finished calculations from there. Returns the candidate's ``dft_*`` row."""
    return campaign_for(config_path).oracle.verify_row(row)


@task
def update(config_path: str, index: int) -> None:
    campaign_for(config_path).update(index)


@task
def report(config_path: str, index: int) -> dict:
    camp = campaign_for(config_path)
    metrics = camp.report(index)
    _artifacts(camp, index, metrics)
    return metrics


def _artifacts(camp: Campaign, index: int, metrics: dict) -> None:
    key = "".join(ch if ch.isalnum() else "-" for ch in camp.cfg.name.lower())
    rows = []
    labels = camp.store.labels()
    for c in camp.selected(index):
        sc = c.get("scores") or {}
        row = {
            "id": c["id"],
            "formula": c["reduced_formula"],
            "spacegroup": c["spacegroup"],
            "acq_value": c["acq_value"],
        }
        for p in camp.cfg.property_names():
            row[f"pred_{p}"] = sc.get(p)
            row[f"oracle_{p}"] = labels.get(c["id"], {}).get(p)
        rows.append(row)
    create_table_artifact(
        rows, key=f"{key}-round-{index}-batch", description=f"selected batch of round {index}"
    )
    md = [
        f"# {camp.cfg.name}: round {index}",
        "",
        f"- hits in batch: {metrics.get('hits')} / {metrics.get('batch_size')}",
        f"- cumulative hits: {metrics.get('cumulative_hits')}",
        (
            f"- generated {metrics.get('generated')}, invalid {metrics.get('invalid')}, "
            f"duplicates {metrics.get('duplicates')}"
        ),
        f"- diversity: {json.dumps(metrics.get('diversity'))}",
        f"- stability/synthesizability: {json.dumps(metrics.get('stability_synthesizability'))}",
        f"- exploitation: {json.dumps(metrics.get('exploitation'))}",
        "",
    ]
    md += [f"**ALERT**: {a}" for a in metrics.get("alerts", [])]
    create_markdown_artifact(
        "\n".join(md),
        key=f"{key}-round-{index}-report",
        description=f"guards and metrics of round {index}",
    )


# ---------------------------------------------------------------------------------- flows
def _chunk_tasks(config_path: str, cfg: CampaignConfig) -> ChunkRunner:
    """Generation and scoring chunks as tasks on the task runner, in parallel."""

    def run(kind: str, jobs) -> list:
        with _resources(cfg):
            if kind == "generate":
                futs = [generate_chunk.submit(config_path, *job) for job in jobs]
            else:
                key = scorer_key(campaign_for(config_path))
                futs = [score_chunk.submit(config_path, cfg.digest(), key, *job) for job in jobs]
        return [f.result() for f in futs]

    return run


def _dft_tasks(config_path: str, cfg: CampaignConfig):
    """The DFT oracle's ``map_fn``: one :func:`dft_candidate` task per candidate, in parallel on
    the task runner (a Ray worker each with ``task_runner.kind: ray``)."""

    def run(_fn, rows: list[dict]) -> list[dict]:
        with _resources(cfg):
            futs = [dft_candidate.submit(config_path, dict(row)) for row in rows]
        return [f.result() for f in futs]

    return run


def _run_round(config_path: str, index: int) -> str:
    """The engine's round plan with its steps as tasks. Generation and scoring fan out to
    tasks while this run holds the step's lease in the store: a concurrent run of the same
    campaign waits instead of repeating the work."""
    camp = campaign_for(config_path)
    steps = {
        "deduped": lambda i: dedup(config_path, i),
        "selected": lambda i: select_batch(config_path, i),
        "submitted": lambda i: submit(config_path, i),
        "labelled": lambda i: label(config_path, i),
        "updated": lambda i: update(config_path, i),
        "reported": lambda i: report(config_path, i),
    }
    if camp.cfg.oracle.kind == "dft":
        # labelled in the flow itself, so each candidate's calculation is its own task
        camp.oracle.map_fn = _dft_tasks(config_path, camp.cfg)
        steps["labelled"] = camp.label
    status = camp.run_round(index, steps=steps, run_chunks=_chunk_tasks(config_path, camp.cfg))
    if status != "reported":
        get_run_logger().info(
            "round %d waits for lab results: matgen campaign import-results --config %s --csv ..",
            index,
            config_path,
        )
    return status or "submitted"


@flow(name="campaign-round", log_prints=True)
def campaign_round(config_path: str, index: int) -> str:
    """One round (or the rest of it) as a flow of tasks."""
    return _run_round(str(config_path), index)


@flow(name="campaign", log_prints=True)
def campaign_flow(
    config_path: str,
    rounds: int | None = None,
    max_new_rounds: int | None = None,
    export_dir: str | None = None,
) -> dict:
    """Run a campaign until ``rounds`` (default: the config's) are reported; resumes.

    Args:
        config_path: campaign YAML.
        rounds: total number of rounds wanted.
        max_new_rounds: at most this many rounds in this run (a scheduled run uses 1).
        export_dir: where to write the lab hand-off when the campaign finishes
            (default ``<work_dir>/exports`` when ``export_on_finish``).
    """
    config_path = str(config_path)
    camp = campaign_for(config_path)
    total = rounds if rounds is not None else camp.cfg.rounds
    done_now = 0
    status = "reported"
    round_flow = campaign_round.with_options(task_runner=build_task_runner(camp.cfg))
    while (i := camp.next_round()) < total:
        if max_new_rounds is not None and done_now >= max_new_rounds:
            break
        status = round_flow(config_path, i)  # a subflow on the configured task runner
        done_now += 1
        if status != "reported":
            break
    out: dict[str, Any] = {"rounds": camp.store.summary()["rounds"], "status": status}
    if status == "reported" and camp.cfg.export_on_finish and camp.next_round() >= total:
        target = Path(export_dir) if export_dir else camp.cfg.work_path() / "exports"
        out["export"] = str(export_campaign(camp.store, target, camp.cfg.property_names()))
    return out


def preflight(cfg: CampaignConfig) -> None:
    """Fail fast (before any flow starts): a changed config, objectives no component
    produces, a missing or damaged generator model.

    Raises:
        matgen.campaign.ConfigChangedError: the config differs from the campaign's.
        matgen.campaign.CampaignConfigError: objectives that cannot be judged.
        matgen.campaign.MissingModelError: names the missing checkpoint.
        matgen.models.CheckpointError: a damaged checkpoint (one line naming the file).
    """
    camp = Campaign(cfg)
    with camp.store:  # closed after the check: the flow's campaign opens its own
        camp.check()
    if cfg.generator.kind == "model":
        from matgen.campaign import ModelGenerator
        from matgen.models import verify_checkpoint

        verify_checkpoint(ModelGenerator(cfg.generator.checkpoint_path()).checkpoint)


def run_campaign(
    config_path: str,
    rounds: int | None = None,
    export_dir: str | None = None,
    progress: bool = False,
) -> dict:
    """Run :func:`campaign_flow` (rounds run on the task runner named in the config); a
    temporary Prefect server it starts stops when this process ends, even by ``kill -9``.

    ``progress``: plain progress lines on stderr (the step under way, a line every 20 s:
    a scoring chunk can take minutes without a Prefect log line), beside Prefect's logs.
    """
    from matgen._progress import Progress

    preflight(load_config(config_path))
    guard_ephemeral_server()
    path = str(Path(config_path).resolve())
    camp = campaign_for(path)
    total = rounds if rounds is not None else camp.cfg.rounds
    todo = max(0, total - camp.next_round()) * len(ROUND_PLAN)
    with Progress(
        f"campaign {camp.cfg.name}",
        total=todo,
        unit="steps",
        bar=False,
        enabled=progress and todo > 0,
    ) as bar:
        camp.progress = bar if progress else None
        try:
            return campaign_flow(config_path=path, rounds=rounds, export_dir=export_dir)
        finally:
            camp.progress = None
            bar.update(desc=f"campaign {camp.cfg.name}", announce=False)


def build_deployment(config_path: str, cron: str, rounds: int | None = None, timezone: str = "UTC"):
    """A deployment of :func:`campaign_flow` on a cron schedule (in ``timezone``, an IANA
    name), one round per run."""
    from prefect.schedules import Cron

    cfg = load_config(config_path)
    preflight(cfg)
    return campaign_flow.to_deployment(
        name=f"{cfg.name}-scheduled",
        schedule=Cron(cron, timezone=timezone),
        parameters={
            "config_path": str(Path(config_path).resolve()),
            "rounds": rounds,
            "max_new_rounds": 1,
        },
        description=f"matgen campaign {cfg.name}: one round per scheduled run",
    )


def serve_campaign(
    config_path: str, cron: str, rounds: int | None = None, timezone: str = "UTC"
) -> None:
    """Serve the scheduled deployment in this process (blocks until interrupted)."""
    from prefect import serve

    serve(build_deployment(config_path, cron, rounds, timezone))

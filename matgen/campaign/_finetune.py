"""The generator learns from the labels: fine-tuning as a resumable, versioned campaign step.

Before round ``k * every`` (k >= 1; ``generator.finetune`` in the campaign YAML) the generator
is fine-tuned with :func:`matgen.training.train` (``init`` = the version in use) on the oracle
hits so far (or, with ``rows: labelled``, every labelled candidate), their labels attached as
conditions, plus replayed rows of its training data; its composition model (composition-first
de novo sampling draws a cell's atoms there), if it has one, is fine-tuned on the same rows
(:func:`matgen.training.finetune_composition_model`). The new weights are written to a
temporary folder and renamed into ``WORK_DIR/generator/round_NNNN``
(:func:`matgen._files.atomic_path`); only then is the version
recorded in the store's ``generator_versions`` table (one row per round at most, a unique key),
so a kill during fine-tuning leaves either no version for the round (the step runs again on
resume, continuing the training run from its last checkpoint) or the complete one. Each round
records the version its pool came from (``rounds.generator_version``).

Diversity guard: when the distinct reduced-formula share of the newest pool a fine-tuned
version generated falls below ``min_distinct_share``, the round goes back to the version
before it and fine-tuning stops (recorded with the version, shown in the round's metrics).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import insert, select

from matgen._files import atomic_path
from matgen.campaign._components import ModelGenerator, build_generator
from matgen.campaign._schema import generator_versions, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from matgen.campaign._config import CampaignConfig, FinetuneConfig
    from matgen.campaign._engine import Campaign
    from matgen.campaign._store import CampaignStore

log = logging.getLogger("matgen.campaign")

#: Weight files a generator version folder holds (a sampling checkpoint).
CHECKPOINT_FILES = ("model.safetensors", "model.json")


def _finetune_composition(parent: str, csv: Path, ft: FinetuneConfig, seed: int,
                          folder: Path) -> dict[str, Any] | None:
    """Fine-tune the parent's composition model on the fine-tuning rows and write it into
    ``folder``: composition-first de novo sampling draws a cell's atoms there, so only this
    moves the proposed chemistry towards the hits. As the denoiser: ``ft.steps`` steps of
    ``ft.batch_size`` rows at the campaign's rate ``ft.lr``, the round's seed; the parent's
    condition scaling, condition dropping and weight decay. The rate is the denoiser's on
    purpose: with the loop's fine-tuning size (20 hits, 60 steps of 16) 1e-4 makes the hits'
    compositions ~8x likelier for +0.05 nats of MP-20 val NLL, while 5e-4 and 2e-3 memorise
    them further and forget more (+0.4, +1.3 nats; ``benchmarks/composition_finetune_probe.py``,
    ``results/composition_finetune_probe_cpu.json``).

    The new ``composition.json`` keeps the parent's ``sampling`` defaults and training record,
    a ``finetuned`` entry added; returns that entry (None: the parent has no composition model,
    the version has none either)."""
    import json

    from matgen.data import load_dataset
    from matgen.generate import resolve_checkpoint
    from matgen.models import (
        COMPOSITION_META,
        has_composition_model,
        load_composition_model,
        save_composition_model,
    )
    from matgen.training import (
        CompositionTrainConfig,
        cell_compositions,
        condition_matrix,
        finetune_composition_model,
    )

    src = resolve_checkpoint(parent)
    if not has_composition_model(src):
        return None
    meta = json.loads((src / COMPOSITION_META).read_text())
    model = load_composition_model(src)
    trained = (meta.get("record") or {}).get("train_config") or {}
    cfg = dataclasses.replace(CompositionTrainConfig(), **{
        k: trained[k] for k in ("weight_decay", "drop_prob", "drop_all_prob") if k in trained})
    cfg = dataclasses.replace(cfg, lr=ft.lr, batch_size=ft.batch_size, seed=seed)
    ds = load_dataset(str(csv), "train", max_atoms=model.cfg.max_atoms)  # as train-composition
    model, rec = finetune_composition_model(
        model, cell_compositions(ds), condition_matrix(ds, model.cfg.conditions,
                                                       absent_missing=True), ft.steps, cfg)
    record = dict(meta.get("record") or {})
    record["finetuned"] = [*record.get("finetuned", []), {"parent": str(src), **rec}]
    save_composition_model(model, folder, record, sampling=meta.get("sampling"),
                           half=meta.get("weights_dtype") == "float16")
    return rec


# ---------------------------------------------------------------------------------- the store
def recorded_versions(store: CampaignStore) -> list[dict[str, Any]]:
    """The campaign's recorded generator versions, oldest round first."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(generator_versions)
            .where(generator_versions.c.campaign_id == store.campaign_id)
            .order_by(generator_versions.c.round_index)
        ).all()
    return [dict(r._mapping) for r in rows]


def version_for_round(store: CampaignStore, index: int) -> dict[str, Any] | None:
    """The newest recorded version made for a round ``<= index`` (None: the configured
    generator)."""
    rows = [r for r in recorded_versions(store) if r["round_index"] <= index]
    return rows[-1] if rows else None


def _record(store: CampaignStore, index: int, **fields: Any) -> None:
    with store.transaction() as conn:
        conn.execute(
            insert(generator_versions).values(
                campaign_id=store.campaign_id, round_index=index, created_at=utcnow(), **fields
            )
        )


# ---------------------------------------------------------------------------------- generator
def current_generator(camp: Campaign, gen: Any) -> Any:
    """The generator the campaign should sample with now: ``gen`` (loaded before), rebuilt
    when the store records a newer version than the one ``gen`` holds."""
    if camp.cfg.generator.finetune is None or camp.cfg.generator.kind != "model":
        return gen if gen is not None else build_generator(camp.cfg)
    rec = version_for_round(camp.store, 1 << 30)
    want = rec["version"] if rec else None
    if gen is not None and getattr(gen, "finetuned_version", None) == want:
        return gen
    if rec is None or rec["checkpoint"] is None:
        new = build_generator(camp.cfg)
    else:
        g = camp.cfg.generator
        new = ModelGenerator(rec["checkpoint"], steps=g.steps, guidance=g.guidance,
                             sampler=g.sampler, batch_size=g.chunk_size)
    if rec is not None:
        new.version = rec["version"]
    new.finetuned_version = want
    return new


def round_generator_version(camp: Campaign, index: int) -> str:
    """The version name round ``index`` generates with (written to its round row)."""
    rec = version_for_round(camp.store, index)
    if rec is not None:
        return str(rec["version"])
    return str(getattr(camp.generator, "version", "?"))


# ---------------------------------------------------------------------------------- the step
def finetune_due(cfg: CampaignConfig, index: int) -> bool:
    ft = cfg.generator.finetune
    return ft is not None and cfg.generator.kind == "model" and index > 0 and index % ft.every == 0


def distinct_share(store: CampaignStore, index: int) -> float | None:
    """Distinct reduced formulas / candidates of round ``index``'s generated pool."""
    cands = store.candidates(index)
    if not cands:
        return None
    return len({c.reduced_formula for c in cands}) / len(cands)


def finetune_step(camp: Campaign, index: int) -> None:
    """Fine-tune the generator before round ``index`` generates, when due (idempotent)."""
    store = camp.store
    if not finetune_due(camp.cfg, index) or camp.done(index, "generated"):
        return
    if any(r["round_index"] == index for r in recorded_versions(store)):
        return

    def recorded() -> bool:
        return any(r["round_index"] == index for r in recorded_versions(store))

    with store.hold(f"round{index}:finetune", ttl=camp.cfg.lease_seconds, stop=recorded) as held:
        if not held or recorded():
            return
        _finetune_or_back_off(camp, index)


def _finetune_or_back_off(camp: Campaign, index: int) -> None:
    store, ft = camp.store, camp.cfg.generator.finetune
    assert ft is not None
    history = recorded_versions(store)
    if any((r["details"] or {}).get("stopped") for r in history):
        return  # the diversity guard stopped fine-tuning for good
    cur = history[-1] if history else None
    share = distinct_share(store, index - 1)
    if cur is not None and cur["checkpoint"] is not None and share is not None and (
        share < ft.min_distinct_share
    ):
        prev = [r for r in history if r["round_index"] < cur["round_index"]]
        back = prev[-1] if prev else None
        why = (f"diversity guard: round {index - 1}'s pool from {cur['version']} has a distinct "
               f"formula share of {share:.2f} < {ft.min_distinct_share}; back to "
               f"{back['version'] if back else 'the configured generator'}, fine-tuning stopped")
        log.warning("round %d: %s", index, why)
        _record(store, index, version=(back["version"] if back else _base_version(camp)),
                checkpoint=back["checkpoint"] if back else None,
                parent=cur["version"],
                details={"stopped": True, "guard": why, "distinct_share": share})
        return
    found = _labelled_rows(camp, skip_suspects=ft.skip_suspects)
    n_hits = sum(r["hit"] for r in found)
    if n_hits < ft.min_hits:
        log.info("round %d: %d hit(s) < generator.finetune.min_hits %d: no fine-tuning",
                 index, n_hits, ft.min_hits)
        return
    # rows: labelled -- hits and non-hits, each with its own labels as conditions
    hits = found if ft.rows == "labelled" else [r for r in found if r["hit"]]
    parent = cur["checkpoint"] if cur and cur["checkpoint"] else str(
        camp.cfg.generator.checkpoint_path())
    from matgen.training import TrainDataError

    try:
        version, folder, details = _train_version(camp, index, hits, parent)
    except TrainDataError as exc:  # e.g. no crystal within the model's max_atoms: go on
        log.warning("round %d: generator fine-tuning skipped (%s)", index, exc)
        return
    details["distinct_share_before"] = share
    _record(store, index, version=version, checkpoint=str(folder),
            parent=cur["version"] if cur else _base_version(camp), details=details)
    # the training run's optimizer state is not needed once its version is recorded
    shutil.rmtree(_run_dir(camp, index), ignore_errors=True)
    with contextlib.suppress(OSError):  # the runs folder, once empty
        _run_dir(camp, index).parent.rmdir()


def _base_version(camp: Campaign) -> str:
    return str(getattr(build_generator(camp.cfg), "version", "?"))


def _labelled_rows(camp: Campaign, skip_suspects: bool = False) -> list[dict[str, Any]]:
    """Oracle-labelled candidates so far (``skip_suspects``: without those more than 0.05
    eV/atom below the known hull by the oracle, else the scorer): ``cif`` (the scorer's
    relaxed structure, else the generated one), labels and scores (condition values: oracle
    label, else the scorer's prediction), ``hit`` (inside every window)."""
    from matgen.surrogates._score import is_suspect

    labels = camp.store.labels()
    out = []
    for c in camp.store.candidates(selected=True):
        lab = labels.get(c.id)
        if not lab:
            continue
        sc = c.scores or {}
        e_hull = lab.get("e_above_hull")
        if skip_suspects and is_suspect(sc.get("e_above_hull") if e_hull is None else e_hull):
            continue
        out.append({"id": c.id, "cif": sc.get("relaxed_cif") or c.cif, "labels": lab,
                    "scores": sc, "hit": camp.is_hit(lab)})
    return out


def _training_rows(
    camp: Campaign, index: int, hits: list[dict[str, Any]], names: list[str]
) -> tuple[list[dict[str, Any]], int]:
    """The fine-tuning set and how many of its first rows are the campaign's: ``hits`` (the
    oracle hits, or every labelled candidate with ``rows: labelled``; conditions: oracle
    label, else the scorer's value, else missing) plus distinct replayed rows of the
    generator's training data (drawn with the round's seed). ``replay_fill``: ``steps *
    batch_size`` rows, the campaign's rows repeated to fill the ``1 - replay`` share (each at
    least once), the replayed rows the rest."""
    import pandas as pd

    ft = camp.cfg.generator.finetune
    assert ft is not None
    rows = []
    for h in hits:
        row = {"material_id": h["id"], "cif": h["cif"]}
        for n in names:
            v = h["labels"].get(n)
            v = h["scores"].get(n) if v is None else v
            row[n] = float(v) if v is not None and math.isfinite(float(v)) else float("nan")
        rows.append(row)
    if ft.replay_fill and rows:
        n_replay = round(ft.steps * ft.batch_size * ft.replay)
        n_hit = max(len(rows), ft.steps * ft.batch_size - n_replay)
        # as even as can be; repeats get their own ids (``ID~rK``): the data reader drops
        # rows whose id it has already seen
        base = rows
        rows = [dict(base[i % len(base)]) for i in range(n_hit)]
        for i in range(len(base), n_hit):
            rows[i]["material_id"] = f"{base[i % len(base)]['material_id']}~r{i // len(base)}"
    elif ft.replay > 0:
        n_replay = math.ceil(len(hits) * ft.replay / (1.0 - ft.replay))
    else:
        n_replay = 0
    n_hit_rows = len(rows)
    replay_csv = ft.replay_csv or _default_replay_csv()
    if n_replay and replay_csv:
        df = pd.read_csv(replay_csv)
        rng = np.random.default_rng(camp.cfg.round_seed(index))
        pick = rng.choice(len(df), size=min(n_replay, len(df)), replace=False)
        keep = ["material_id", "cif", *[n for n in names if n in df.columns]]
        rows += df.iloc[np.sort(pick)][keep].to_dict("records")
    return rows, n_hit_rows


def _default_replay_csv() -> str | None:
    """``$MATGEN_DATA_DIR/mp20_reduced/train.csv`` (the shipped model's training split), if
    there."""
    path = Path(os.environ.get("MATGEN_DATA_DIR", "")) / "mp20_reduced" / "train.csv"
    if os.environ.get("MATGEN_DATA_DIR") and path.is_file():
        return str(path)
    log.warning("generator.finetune: no replay_csv and no $MATGEN_DATA_DIR/mp20_reduced/"
                "train.csv: fine-tuning on the hits alone")
    return None


def _train_config(parent: str, ft: FinetuneConfig, seed: int, n_rows: int):
    """The fine-tuning run's config: the parent checkpoint's own training config, with the
    campaign's step count, batch, learning rate and no validation split.

    Task: a parent with a composition model samples de novo composition-first (atoms from the
    composition model, structure from the denoiser's CSP mode), so it keeps its own task mix
    (``task``, ``csp_share``) and the CSP mode learns from the hits too; a parent without one
    (an older or a user's checkpoint) samples de novo with the denoiser's joint mode, so it
    fine-tunes that mode alone (``gen``).

    Diffusion settings: the parent's as it samples (``metadata.diffusion``), not as it was
    trained (``config.diffusion``): sampling defaults chosen after training (the shipped model's
    flow slope 30, clash repulsion 0.4 and floor 0.7 A) live only there, and the new version
    samples with its config's settings. The training loss reads none of them.

    Data: the hits as they are, without the parent's chemical-substitution augmentation (the
    shipped model trained with ``data.substitute: 0.6``): a substituted hit is another
    composition with its property labels dropped, which would pull the version away from the
    chemistry and the targets the loop fine-tunes it towards."""
    from matgen.diffusion import DiffusionConfig
    from matgen.generate import read_metadata, resolve_checkpoint
    from matgen.models import has_composition_model
    from matgen.training import TrainConfig

    src = resolve_checkpoint(parent)
    meta = read_metadata(src)
    base = TrainConfig.model_validate(meta["config"])
    if meta.get("diffusion"):
        base = base.model_copy(update={"diffusion": DiffusionConfig.model_validate(
            {**base.diffusion.model_dump(), **meta["diffusion"]})})
    task = base.task if has_composition_model(src) else "gen"
    optim = base.optim.model_copy(update={
        "lr": ft.lr, "warmup_steps": min(base.optim.warmup_steps, max(1, ft.steps // 5)),
        "schedule": "steps"})
    data = base.data.model_copy(update={"val_split": None, "substitute": 0.0})
    return base.model_copy(update={
        "data": data, "optim": optim, "max_steps": ft.steps, "seed": seed,
        "batch_size": min(ft.batch_size, max(1, n_rows)), "task": task,
        "checkpoint_every": max(1, ft.steps // 4), "keep_checkpoints": 1, "num_workers": 0,
        "log_every": max(1, ft.steps // 10), "compile": False})


def _parent_objective(parent: str, tcfg) -> Any:
    """The diffusion objective with the parent's data statistics (lattice prior density, atom
    counts of de novo samples), not those of the small fine-tuning set; None when the parent
    does not record them."""
    from matgen.diffusion import DatasetStats
    from matgen.generate import cached_diffusion, read_metadata, resolve_checkpoint

    stats = read_metadata(resolve_checkpoint(parent)).get("stats")
    return cached_diffusion(tcfg.diffusion, DatasetStats.model_validate(stats)) if stats else None


def _run_dir(camp: Campaign, index: int) -> Path:
    return camp.cfg.work_path() / "generator" / "_runs" / f"round_{index:04d}"


def _train_version(
    camp: Campaign, index: int, hits: list[dict[str, Any]], parent: str
) -> tuple[str, Path, dict[str, Any]]:
    """Train round ``index``'s version; returns (name, its folder, details). The training run
    (``WORK_DIR/generator/_runs/round_NNNN``) resumes after a kill; the version folder appears
    whole (temporary folder + rename)."""
    import pandas as pd

    from matgen.generate import read_metadata, resolve_checkpoint
    from matgen.training import train

    ft = camp.cfg.generator.finetune
    assert ft is not None
    names = sorted((read_metadata(resolve_checkpoint(parent)).get("conditions") or {}).keys())
    run_dir = _run_dir(camp, index)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows, hit_rows = _training_rows(camp, index, hits, names)
    csv = run_dir / "finetune.csv"
    if not csv.is_file():  # the same rows on resume (a deterministic draw)
        with atomic_path(csv) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    tcfg = _train_config(parent, ft, camp.cfg.round_seed(index), len(rows))
    device = None if ft.device == "auto" else ft.device
    res = train(tcfg, data=str(csv), out=run_dir, resume=True, init=parent, device=device,
                diffusion=_parent_objective(parent, tcfg), progress=False, log=None)
    target = camp.cfg.work_path() / "generator" / f"round_{index:04d}"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        for f in CHECKPOINT_FILES:
            shutil.copy2(Path(res.checkpoint) / f, tmp / f)
        composition = _finetune_composition(parent, csv, ft, camp.cfg.round_seed(index), tmp)
    losses = [v for _, v in res.losses if math.isfinite(v)]
    details = {"hits": sum(h["hit"] for h in hits),
               "replay_rows": len(rows) - hit_rows, "steps": res.step,
               "loss_last": float(np.mean(losses[-10:])) if losses else None,
               "parent_checkpoint": parent}
    if composition is not None:  # the composition model, fine-tuned on the same rows
        details["composition"] = composition
    if ft.replay_fill:  # "hits": distinct hits; "hit_rows": their rows, repeats counted
        details.update(replay_fill=True, hit_rows=hit_rows)
    if ft.rows == "labelled":  # the campaign's rows: every labelled candidate
        details.update(rows="labelled", labelled=len(hits))
    if ft.skip_suspects:
        details.update(skip_suspects=True)
    return f"ft-r{index:03d}", target, details


def generator_metrics(store: CampaignStore, index: int) -> dict[str, Any]:
    """What a round's report says about its generator: version, distinct-formula share of
    its pool, and the fine-tuning record made for it (if any)."""
    rnd = store.round(index) or {}
    rec = next((r for r in recorded_versions(store) if r["round_index"] == index), None)
    out: dict[str, Any] = {"version": rnd.get("generator_version"),
                           "distinct_share": distinct_share(store, index)}
    if rec is not None:
        out["finetuned"] = {"version": rec["version"], "parent": rec["parent"],
                            **(rec["details"] or {})}
    return out

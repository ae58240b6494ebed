"""Setting a training run up: its data, model, objective, EMA, optimizer and schedule
(:class:`Run`), resuming one (:class:`RunState` and RNG from a checkpoint), and the wrappers
(DDP, ``torch.compile``) around the model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from matgen.crystal import CrystalBatch
from matgen.generate import STATE, read_metadata, step_checkpoints, weights_id
from matgen.models import WEIGHTS
from matgen.training._checkpoint import checkpoint_damage, library_versions, load_training_state
from matgen.training._components import (
    ResumeMismatchError,
    TrainDataError,
    TrainingObjective,
    build_components,
    build_distillation,
    build_optimizer,
    inherited_conditions,
    load_init_weights,
)
from matgen.training._config import TrainConfig
from matgen.training._data import (
    BatchSource,
    IndexStream,
    as_source,
    content_sha256,
    dataset_stats,
    file_sha256,
)
from matgen.training._distributed import DistInfo, DistributedModel
from matgen.training._ema import EMA


@dataclass
class TrainCall:
    """The arguments of :func:`train` beyond the config, the ranks and the run dir."""

    data: Any
    max_time_minutes: float | None
    resume: bool
    init: str | Path | None
    val_data: Any
    denoiser: nn.Module | None
    diffusion: Any
    progress: bool


@dataclass
class TrainData:
    """The training set, its description and statistics, the validation set, and the condition
    names (inherited ones first) with the inherited specs and label statistics."""

    source: BatchSource
    desc: dict
    stats: dict
    val_source: BatchSource | None
    names: list[str]
    inherited: list
    inherited_stats: dict


@dataclass
class Run:
    """Everything the steps use that stays fixed for the run."""

    cfg: TrainConfig
    info: DistInfo
    run_dir: Path
    model: nn.Module  # the un-wrapped module (EMA source, checkpoints)
    train_model: nn.Module  # the module the step calls: DDP / compiled around ``model``
    objective: TrainingObjective
    ema: EMA
    optimizer: torch.optim.Optimizer
    scheduler: Any
    names: list[str]
    source: BatchSource
    stream: IndexStream
    base_meta: dict
    val_batches: list[CrystalBatch]
    use_bf16: bool
    say: Callable[[str], None]
    params: list[torch.Tensor] = field(default_factory=list)  # the trained ones (clipping)

    @property
    def ckpt_root(self) -> Path:
        return self.run_dir / "checkpoints"


@dataclass
class RunState:
    """What the steps change (the step, the data position and the skip counters are saved in
    every checkpoint)."""

    step: int = 0
    position: int = 0
    nonfinite_total: int = 0
    streak: int = 0
    last_finite: float = float("nan")
    losses: list[tuple[int, float]] = field(default_factory=list)


# ---------------------------------------------------------------------- set-up
def start_checkpoint(run_dir: Path, resume: bool, say) -> Path | None:
    """The checkpoint to resume from (``None``: a fresh run); a fresh run refuses a run dir
    that holds checkpoints.

    Resuming takes the newest intact checkpoint: ``last/`` or a ``step_N/`` whose training
    state or weights are damaged (a truncated file, changed bytes) is skipped, and the run
    says which one it falls back to.

    Raises:
        matgen.models.CheckpointError: every checkpoint of the run is damaged.
    """
    ckpt_root = run_dir / "checkpoints"
    if resume:
        found = resume_candidates(ckpt_root)
        skipped = []
        for folder in found:
            why = checkpoint_damage(folder)
            if why is None:
                if skipped:
                    say(f"skipped {len(skipped)} damaged checkpoint(s) ({'; '.join(skipped)}): "
                        f"resuming from the newest intact one, {folder}")
                return folder
            skipped.append(why)
        if skipped:
            from matgen.models import CheckpointError

            raise CheckpointError(f"{ckpt_root}: no intact checkpoint to resume from "
                                  f"({skipped[0]})")
        say(f"no checkpoint in {ckpt_root}: starting a fresh run")
        return None
    if step_checkpoints(ckpt_root):
        raise FileExistsError(
            f"{run_dir} already holds checkpoints: pass --resume to continue it, "
            "or choose another --out"
        )
    return None


def resume_candidates(ckpt_root: Path) -> list[Path]:
    """Complete checkpoints of a run, newest first (``last/`` before the ``step_N/`` of its
    own step; a ``last/`` whose ``model.json`` is unreadable first of all)."""
    found = [(step, 0, p) for step, p in step_checkpoints(ckpt_root)]
    last = ckpt_root / "last"
    if (last / STATE).is_file() and (last / WEIGHTS).is_file():
        try:
            step = int(read_metadata(last).get("step", -1))
        except Exception:  # noqa: BLE001 - a damaged model.json: tried (and reported) first
            step = 1 << 62
        found.append((step, 1, last))
    return [p for _, _, p in sorted(found, key=lambda x: (x[0], x[1]), reverse=True)]


def inherited_for(start_ckpt: Path | None, init) -> tuple[list, dict]:
    """Fine-tuning keeps the pretrained conditions (their specs and label stats) so the model
    starts exactly as the checkpoint; a resumed fine-tuning run recorded them."""
    if start_ckpt is None:
        return inherited_conditions(init) if init is not None else ([], {})
    rec = read_metadata(start_ckpt).get("inherited_conditions") or {}
    if not rec.get("specs"):
        return [], dict(rec.get("stats") or {})
    from matgen.models import ConditionSpec

    return [ConditionSpec(**c) for c in rec["specs"]], dict(rec.get("stats") or {})


def load_val_source(cfg: TrainConfig, data: Any, val_data: Any, say) -> BatchSource | None:
    if val_data is not None:
        return load_source(cfg, val_data, cfg.data.val_split)[0]
    named = data is None or (isinstance(data, (str, Path)) and not Path(data).is_file())
    if (cfg.data.val_split and cfg.data.val_batches > 0 and named
            and cfg.data.val_split != cfg.data.train_split):  # a single file has no other split
        try:
            return load_source(cfg, data, cfg.data.val_split)[0]
        except (FileNotFoundError, KeyError, ValueError) as e:
            say(f"no validation split {cfg.data.val_split!r} ({e}); training without it")
    return None


def load_data(cfg: TrainConfig, call: TrainCall, start_ckpt: Path | None, init, say) -> TrainData:
    """The training set and its statistics (see :class:`TrainData`).

    Raises:
        TrainDataError: the data is missing or unusable (one line).
    """
    from matgen.data import DownloadError

    inherited, inherited_stats = inherited_for(start_ckpt, init)
    try:
        source, desc, stats = _training_set(cfg, call, [sp.name for sp in inherited])
    except (FileNotFoundError, KeyError, ValueError, DownloadError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise TrainDataError(" ".join(str(msg).split())) from None
    names = [sp.name for sp in inherited]
    names += [n for n in cfg.conditions.names if n not in names]
    val_source = load_val_source(cfg, call.data, call.val_data, say)
    return TrainData(source, desc, stats, val_source, names, inherited, inherited_stats)


def train_subset_indices(n: int, limit: int, seed: int) -> list[int]:
    """The sorted indices of the ``data.train_limit`` subset: ``limit`` of ``n`` crystals drawn
    with the run's ``seed`` (all of them when ``limit >= n``)."""
    if limit >= n:
        return list(range(n))
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:limit].sort().values.tolist()


def _training_set(cfg: TrainConfig, call: TrainCall, old_names: list[str]):
    source, desc = load_source(cfg, call.data, cfg.data.train_split)
    subset = cfg.data.train_limit
    if subset is not None and len(source) > subset:
        source = _IndexView(source, train_subset_indices(len(source), subset, cfg.seed))
        desc = dict(desc, train_limit=subset, sha256=None)  # a subset: hashed by content below
    if len(source) == 0:
        where = desc.get("source") or desc.get("name")
        limit = f" (data.max_atoms: {cfg.data.max_atoms})" if cfg.data.max_atoms else ""
        raise ValueError(f"{where}: no usable crystals to train on{limit}; list the bad rows "
                         f"with `matgen data validate {where}`")
    names = old_names + [n for n in cfg.conditions.names if n not in old_names]
    stats = dataset_stats(source, names, optional=set(old_names))
    if desc.get("sha256") is None:
        desc["sha256"] = content_sha256(source)
    desc["num_crystals"] = len(source)
    if cfg.data.substitute > 0:  # stats and hash are of the crystals as they are
        from matgen.training._substitute import Substituted

        source = Substituted(source, cfg.data.substitute, cfg.seed, stats["elements"])
        desc["substitute"] = cfg.data.substitute
    return source, desc, stats


def build_model(cfg, info, data: TrainData, call: TrainCall, init, start_ckpt, teacher_path, say):
    """``(model on the device, objective, distillation metadata or None)``; the weights are
    initialised from ``cfg.seed`` (the same on every rank), then from ``init``."""
    torch.manual_seed(cfg.seed)
    denoiser, objective = call.denoiser, call.diffusion
    if denoiser is None or objective is None:
        built_model, built_diff = build_components(cfg, data.stats, data.inherited)
        denoiser = denoiser if denoiser is not None else built_model
        objective = objective if objective is not None else built_diff
    model = denoiser.to(info.device)
    if init is not None and start_ckpt is None:
        missing, skipped = load_init_weights(model, init)
        say(f"initialised from {init}: {len(missing)} new tensors, {len(skipped)} skipped")
    distill_meta = None
    if teacher_path is not None:
        objective, distill_meta = build_distillation(cfg, teacher_path, info.device)
        say(f"consistency distillation from {teacher_path} ({cfg.distill.intervals} intervals)")
    return model, objective, distill_meta


def init_record(init) -> dict | None:
    """Where an ``init`` run's weights started (the parent checkpoint's path, id and step), so a continued model names its lineage."""
    if init is None:
        return None
    return {"path": str(init), "checkpoint_id": weights_id(init),
            "step": read_metadata(init).get("step")}


def base_metadata(cfg, info, data: TrainData, objective, distill_meta, init=None) -> dict:
    """The metadata every checkpoint of the run carries (``model.json``)."""
    stats = objective.stats
    return {
        "format": "matgen-checkpoint/1",
        "weights": "ema",
        "config": cfg.to_dict(),
        "task": cfg.task,
        "diffusion": cfg.diffusion.model_dump(mode="json"),
        "stats": stats.model_dump(mode="json") if stats is not None else None,
        "conditions": {n: data.inherited_stats[n] if n in data.inherited_stats
                       else data.stats["conditions"][n] for n in data.names},
        "inherited_conditions": {"specs": [sp.model_dump(mode="json") for sp in data.inherited],
                                 "stats": data.inherited_stats} if data.inherited else None,
        "cond_drop_prob": cfg.conditions.drop_prob,
        "dataset": data.desc,
        "dataset_stats": data.stats,
        "versions": library_versions(),
        "world_size": info.world_size,
        "distill": distill_meta,
        "init": init_record(init),
    }


def validation_batches(cfg: TrainConfig, info: DistInfo, val_source) -> list[CrystalBatch]:
    """The fixed validation batches (rank 0 validates)."""
    if val_source is None or not info.is_main or len(val_source) == 0:
        return []
    vstream = IndexStream(len(val_source), cfg.seed + 12345)
    out = []
    for k in range(cfg.data.val_batches):
        idx = vstream.take(k * cfg.batch_size, min(cfg.batch_size, len(val_source)))
        out.append(val_source.batch(idx.tolist()))
    return out


def build_run(cfg, info, run_dir, call: TrainCall, init, start_ckpt, teacher_path, say) -> Run:
    """Data, model, objective, EMA, optimizer and schedule; the noise RNG seeded per rank."""
    data = load_data(cfg, call, start_ckpt, init, say)
    model, objective, distill_meta = build_model(cfg, info, data, call, init, start_ckpt,
                                                  teacher_path, say)
    ema = EMA(model, cfg.ema_decay)
    optimizer, scheduler = build_optimizer(cfg, model, cfg.max_steps)
    torch.manual_seed(cfg.seed + 1_000_003 * (info.rank + 1))  # noise differs across ranks
    if info.device.type == "cuda":
        torch.cuda.manual_seed(cfg.seed + 1_000_003 * (info.rank + 1))
    use_bf16 = info.device.type == "cuda" and cfg.precision in ("bf16", "auto")
    return Run(cfg, info, run_dir, model, model, objective, ema, optimizer, scheduler,
                data.names, data.source, IndexStream(len(data.source), cfg.seed),
                base_metadata(cfg, info, data, objective, distill_meta, init),
                validation_batches(cfg, info, data.val_source), use_bf16, say,
                [p for p in model.parameters() if p.requires_grad])


def resume_from(run: Run, state: RunState, ckpt: Path) -> None:
    """Weights, EMA, optimizer, schedule, position, counters and (same world size) RNG."""
    cfg, info = run.cfg, run.info
    check_resumable(cfg, ckpt, run.base_meta.get("dataset"))
    # on CPU: RNG states must stay CPU tensors; load_state_dict moves the rest
    st = load_training_state(ckpt, map_location="cpu")
    run.model.load_state_dict(st["model"])
    run.ema.load_state_dict(st["ema"])
    run.optimizer.load_state_dict(st["optimizer"])
    run.scheduler.load_state_dict(st["scheduler"])
    state.step, state.position = int(st["step"]), int(st["position"])
    state.nonfinite_total = int(st.get("nonfinite_total", 0))
    rngs = st["rng"]
    if len(rngs) == info.world_size:
        set_rng_state(rngs[info.rank], info)
    else:
        run.say(f"resuming with {info.world_size} ranks from a {len(rngs)}-rank run: "
                "data order kept, noise RNG reseeded")
    if int(st.get("global_batch", cfg.batch_size)) != cfg.batch_size:
        run.say("batch_size differs from the checkpoint's: data order continues by position")
    run.say(f"resumed from {ckpt} at step {state.step}")


def wrap_model(run: Run) -> None:
    """DDP across ranks, ``torch.compile`` when configured, TF32 on CUDA."""
    if run.info.distributed:
        run.train_model = DistributedModel(run.model, run.info,
                                           run.cfg.ddp_find_unused_parameters,
                                           run.cfg.ddp_bucket_view)
    if run.cfg.compile:
        run.train_model = torch.compile(run.train_model, dynamic=True)
    if run.info.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 parts (and fp32 runs) use TF32
        torch.backends.cudnn.allow_tf32 = True


def compile_fallback(cfg: TrainConfig):
    """While a compiled step runs, a graph dynamo cannot trace (e.g. some e3nn objects) runs
    eagerly instead of failing; scoped to the step, not set process-wide."""
    if not cfg.compile:
        return contextlib.nullcontext()
    from torch import _dynamo

    return _dynamo.config.patch(suppress_errors=True)


def load_source(cfg: TrainConfig, data: Any, split: str | None) -> tuple[BatchSource, dict]:
    """The dataset for ``split`` and a description (name, split, source, sha256)."""
    if data is not None and not isinstance(data, (str, Path)):
        src = _max_atoms_filter(as_source(data), cfg.data.max_atoms)
        return src, {"name": type(data).__name__, "split": None, "sha256": None}
    name = str(data) if data is not None else cfg.data.dataset
    from matgen.data import load_dataset

    ds = load_dataset(name, split=split or "train", max_atoms=cfg.data.max_atoms,
                      reduce=cfg.data.reduce)
    sha = getattr(ds, "sha256", None) or None
    if sha is None:
        files = [Path(name)] if Path(name).is_file() else []
        sha = file_sha256(files) if files else None
    desc = {"name": getattr(ds, "name", name), "split": getattr(ds, "split", split),
            "source": str(getattr(ds, "source", name)), "sha256": sha}
    bad = sum(not e.excluded for e in getattr(ds, "errors", ()))
    if bad:  # skipped as bad data (not left out by data.max_atoms): the CLI then exits 1
        desc["unusable_entries"] = bad
    return ds, desc


class _IndexView:
    """The crystals of ``src`` at the indices ``keep``, in that order."""

    def __init__(self, src: BatchSource, keep: list[int]) -> None:
        self.src = src
        self.keep = keep
        self.property_names = getattr(src, "property_names", None)

    def __len__(self) -> int:
        return len(self.keep)

    def batch(self, indices: Sequence[int]) -> CrystalBatch:
        return self.src.batch([self.keep[int(i)] for i in indices])


def _max_atoms_filter(src: BatchSource, max_atoms: int | None, chunk: int = 4096) -> BatchSource:
    """Only the crystals with at most ``max_atoms`` atoms."""
    if max_atoms is None:
        return src
    keep, n = [], len(src)
    for lo in range(0, n, chunk):
        idx = list(range(lo, min(n, lo + chunk)))
        na = src.batch(idx).num_atoms
        keep.extend(i for i, k in zip(idx, na.tolist(), strict=True) if k <= max_atoms)
    return _IndexView(src, keep)


def rng_state(info: DistInfo) -> dict[str, torch.Tensor | None]:
    return {
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(info.device) if info.device.type == "cuda" else None,
    }


def set_rng_state(state: dict, info: DistInfo) -> None:
    """(Checkpoints before the loss protocol also hold a ``drop`` generator; unused.)"""
    torch.set_rng_state(state["cpu"])
    if info.device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], info.device)


def _leaf_changes(old: Any, new: Any, prefix: str) -> list[str]:
    """``key.path: OLD -> NEW`` for every leaf that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _leaf_changes(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


#: Keys of ``data`` that change which crystals a run trains on (validation keys do not).
_DATA_KEYS = ("train_split", "max_atoms", "reduce")


def _dataset_changes(old: dict, new: dict) -> list[str]:
    """The training set of a run (``metadata.dataset``) against this call's."""
    if not old or not new:
        return []
    old_sha, new_sha = old.get("sha256"), new.get("sha256")
    same = old_sha == new_sha if old_sha and new_sha else (
        old.get("source") == new.get("source") and old.get("num_crystals") == new.get("num_crystals"))
    if same:
        return []

    def show(d: dict) -> str:
        sha = f", sha256 {d['sha256'][:12]}" if d.get("sha256") else ""
        return f"{d.get('source') or d.get('name')} ({d.get('num_crystals')} crystals{sha})"

    return [f"data: the run trained on {show(old)}, this call gives {show(new)}"]


def _with_defaults(old: dict) -> dict:
    """A run's stored config with the defaults of keys added to matgen since it was written
    (absent from the file, not changed by the user); as stored when it no longer validates."""
    from pydantic import ValidationError

    try:
        return TrainConfig.model_validate(old).to_dict()
    except (ValidationError, ValueError, TypeError):
        return old


def check_resumable(cfg: TrainConfig, ckpt: Path, dataset: dict | None = None) -> None:
    """Refuse to resume ``ckpt`` with another model, diffusion, conditions, task or training
    data than its run's (``dataset``: this call's ``metadata.dataset``).

    Raises:
        ResumeMismatchError: one line naming every difference (``model.hidden: 32 -> 64``).
    """
    meta = read_metadata(ckpt)
    old = _with_defaults(meta.get("config") or {})
    new = cfg.to_dict()
    diff = []
    for k in ("model", "diffusion", "conditions", "task"):
        diff += _leaf_changes(old.get(k), new.get(k), k)
    old_data, new_data = old.get("data") or {}, new.get("data") or {}
    diff += _leaf_changes({k: old_data.get(k) for k in _DATA_KEYS if k in old_data},
                          {k: new_data.get(k) for k in _DATA_KEYS if k in old_data}, "data")
    diff += _dataset_changes(meta.get("dataset") or {}, dataset or {})
    if diff:
        raise ResumeMismatchError(
            f"cannot resume {ckpt}: {'; '.join(diff)} (use the run's config.yaml and data, or "
            "start a new run with --init)"
        )

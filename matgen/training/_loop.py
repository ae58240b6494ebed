"""The training loop: generic over a denoiser and a diffusion object with ``.loss``."""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import inspect
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from matgen.crystal import CrystalBatch
from matgen.generate import DEFAULT_MODEL_DIR, cached_diffusion
from matgen.training._checkpoint import (
    latest_checkpoint,
    library_versions,
    load_training_state,
    read_metadata,
    read_weights,
    resolve_checkpoint,
    save_run_checkpoint,
    step_checkpoints,
    weights_id,
)
from matgen.training._conditions import training_conditions
from matgen.training._config import TrainConfig
from matgen.training._data import (
    BatchSource,
    IndexStream,
    StepBatches,
    as_source,
    content_sha256,
    dataset_stats,
    file_sha256,
    iterate_batches,
)
from matgen.training._distributed import (
    DistInfo,
    DistributedModel,
    all_reduce_mean,
    barrier,
    gather_objects,
    setup_distributed,
    teardown_distributed,
)
from matgen.training._ema import EMA
from matgen.training._schedule import warmup_cosine


class NonFiniteLossError(RuntimeError):
    """Raised after ``max_nonfinite`` consecutive steps with a non-finite loss or gradient."""


class ResumeMismatchError(ValueError):
    """``resume`` with a config whose model, diffusion or conditions differ from the run's."""


class InitMismatchError(ResumeMismatchError):
    """``init`` with a checkpoint whose network (outside the condition embeddings) does not
    fit the config's model: fine-tuning it would silently train from scratch. A usage error
    like :class:`ResumeMismatchError` (the CLI exits with code 2)."""


@dataclass
class RunResult:
    """What :func:`train` did.

    Attributes:
        run_dir: the run directory.
        step: the last completed step.
        checkpoint: the final checkpoint folder (``RUN_DIR/checkpoints/step_N``).
        stopped: ``max_steps``, ``max_time`` or ``interrupted`` (SIGINT / SIGTERM).
        losses: ``(step, loss)`` of every step of this call (the loss averaged over ranks;
            NaN for a skipped step).
        nonfinite_steps: skipped steps in the whole run (resumes included).
        elapsed_s: wall-clock seconds of this call's loop.
        steps_per_s: steps of this call divided by ``elapsed_s``.
        resumed_from: the step this call started from (0 for a fresh run).
    """

    run_dir: Path
    step: int
    checkpoint: Path | None
    stopped: str
    losses: list[tuple[int, float]] = field(default_factory=list)
    nonfinite_steps: int = 0
    elapsed_s: float = 0.0
    steps_per_s: float = 0.0
    resumed_from: int = 0


# ---------------------------------------------------------------------- components
def condition_specs(cfg: TrainConfig, stats: dict, inherited: Sequence[Any] = ()) -> list:
    """The denoiser's ``ConditionSpec`` list: names from ``cfg.conditions``, scalar
    normalisation (mean, std) from the training data unless given explicitly.

    ``inherited`` (the ``ConditionSpec`` list of an ``init`` checkpoint) come first, in the
    checkpoint's order and with the checkpoint's mean / std (also for a name the config lists),
    so the pretrained condition embeddings see the same inputs; the config's other conditions
    follow.
    """
    from matgen.models import ConditionSpec

    old = {s.name: s for s in inherited}
    specs = list(inherited)
    for p in cfg.conditions.properties:
        name = p if isinstance(p, str) else p.name
        if name in old:
            continue
        st = stats["conditions"][name]
        if isinstance(p, str):
            specs.append(ConditionSpec(name=p, mean=st["mean"], std=st["std"]))
        elif p.kind == "scalar" and not ({"mean", "std"} & p.model_fields_set):
            specs.append(p.model_copy(update={"mean": st["mean"], "std": st["std"]}))
        else:
            specs.append(p)
    return specs


def inherited_conditions(path: str | Path) -> tuple[list[Any], dict[str, dict]]:
    """The conditions of checkpoint ``path``: its denoiser's ``ConditionSpec`` list
    (``model.json`` -> ``denoiser.conditions``) and their label statistics
    (``metadata.conditions``: mean, std, count, min, max; mean / std from the spec where the
    metadata lacks an entry)."""
    from matgen.models import ConditionSpec

    folder = resolve_checkpoint(path)
    raw = json.loads((folder / "model.json").read_text())
    specs = [ConditionSpec(**c) for c in ((raw.get("denoiser") or {}).get("conditions") or [])]
    meta = (raw.get("metadata") or {}).get("conditions") or {}
    stats = {}
    for sp in specs:
        st = dict(meta.get(sp.name) or {})
        st.setdefault("mean", sp.mean)
        st.setdefault("std", sp.std)
        stats[sp.name] = st
    return specs, stats


def build_components(
    cfg: TrainConfig, stats: dict, inherited: Sequence[Any] = ()
) -> tuple[nn.Module, Any]:
    """The denoiser and diffusion described by ``cfg`` for data with ``stats``
    (:func:`matgen.training.dataset_stats`): conditions and the lattice prior's density come
    from the data; ``inherited`` conditions (see :func:`condition_specs`) are added."""
    from matgen.diffusion import DatasetStats
    from matgen.models import build_denoiser

    specs = condition_specs(cfg, stats, inherited)
    model_cfg = cfg.model.model_copy(update={"conditions": specs})
    diff_stats = DatasetStats(
        mean_volume_per_atom=stats["mean_volume_per_atom"],
        num_atoms_counts={int(k): int(v) for k, v in stats["num_atoms_hist"].items()},
    )
    return build_denoiser(model_cfg), cached_diffusion(cfg.diffusion, diff_stats)


def distill_teacher_path(teacher: str) -> Path:
    """The checkpoint folder a ``distill.teacher`` entry names (``default``: the shipped model)."""
    path = DEFAULT_MODEL_DIR if teacher == "default" else Path(teacher)
    if not path.exists():
        raise FileNotFoundError(f"distill.teacher {teacher}: not found")
    return resolve_checkpoint(path)


def build_distillation(cfg: TrainConfig, teacher_path: Path, device: torch.device):
    """``(ConsistencyDistillation, metadata)`` for ``cfg.distill`` around the teacher checkpoint.

    The student shares the teacher's diffusion (its config and data statistics); a config whose
    ``diffusion`` section differs from the teacher's is refused.
    """
    from matgen.diffusion import ConsistencyDistillation
    from matgen.models import load_checkpoint

    teacher, tmeta = load_checkpoint(teacher_path, device=device)
    tdiff, tstats = tmeta.get("diffusion"), tmeta.get("stats")
    if tdiff is None or tstats is None:
        raise ValueError(f"{teacher_path}: teacher metadata lacks the diffusion config or stats")
    if tdiff.model_dump() != cfg.diffusion.model_dump():
        diff = sorted(k for k, v in cfg.diffusion.model_dump().items()
                      if tdiff.model_dump().get(k) != v)
        raise InitMismatchError(
            f"distill: the config's diffusion differs from the teacher's in {diff}; copy the "
            "teacher's diffusion section"
        )
    base = cached_diffusion(tdiff, tstats)
    d = cfg.distill
    loss = ConsistencyDistillation(base, teacher, d.intervals, d.coord_scale,
                                   cfg.diffusion.type_weight, d.lattice_scale)
    meta = {"method": "consistency-distillation", "teacher": str(teacher_path),
            "teacher_id": weights_id(teacher_path), "intervals": d.intervals,
            "coord_scale": d.coord_scale, "lattice_scale": d.lattice_scale,
            "sampler": "consistency"}
    return loss, meta


def _loss_caller(diffusion: Any) -> Callable[..., tuple[torch.Tensor, dict]]:
    """``f(model, batch, cond, task) -> (loss, logs)`` over ``diffusion.loss``'s signature."""
    fn = diffusion.loss
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        params = {}
    takes_task = "task" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )

    def call(model, batch, cond, task):
        out = fn(model, batch, cond=cond, task=task) if takes_task else fn(model, batch, cond=cond)
        if isinstance(out, tuple):
            loss, logs = out
        else:
            loss, logs = out, {}
        return loss, dict(logs or {})

    return call


# ---------------------------------------------------------------------- data
def _load_source(cfg: TrainConfig, data: Any, split: str | None) -> tuple[BatchSource, dict]:
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
    return ds, desc


class _Filtered:
    """Only the crystals with at most ``max_atoms`` atoms."""

    def __init__(self, src: BatchSource, max_atoms: int, chunk: int = 4096) -> None:
        keep = []
        n = len(src)
        for lo in range(0, n, chunk):
            idx = list(range(lo, min(n, lo + chunk)))
            na = src.batch(idx).num_atoms
            keep.extend(i for i, k in zip(idx, na.tolist(), strict=True) if k <= max_atoms)
        self.src = src
        self.keep = keep
        self.property_names = getattr(src, "property_names", None)

    def __len__(self) -> int:
        return len(self.keep)

    def batch(self, indices: Sequence[int]) -> CrystalBatch:
        return self.src.batch([self.keep[int(i)] for i in indices])


def _max_atoms_filter(src: BatchSource, max_atoms: int | None) -> BatchSource:
    return src if max_atoms is None else _Filtered(src, max_atoms)


# ---------------------------------------------------------------------- helpers
def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def load_init_weights(model: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Load a checkpoint's (EMA) weights into ``model`` for fine-tuning.

    Only the condition embeddings (``cond.*``) may differ: their tensors absent from the
    checkpoint (new conditions) keep their fresh (zero-output) initialisation, and checkpoint
    condition tensors the model lacks or whose shape changed are skipped. Every other tensor
    must be present with the same shape in both.

    Returns:
        ``(missing, skipped)``: parameter names not loaded, and checkpoint names ignored.

    Raises:
        InitMismatchError: (one line) a tensor outside ``cond.`` is missing or differs in
            shape, e.g. a checkpoint of another model size; nothing is loaded.
    """
    state = read_weights(resolve_checkpoint(path))
    own = model.state_dict()
    bad = []
    for k in sorted(set(own) | set(state)):
        if k.startswith("cond."):
            continue
        if k not in state:
            bad.append(f"{k} missing from the checkpoint")
        elif k not in own:
            bad.append(f"{k} not in the model")
        elif own[k].shape != state[k].shape:
            bad.append(f"{k} is {tuple(state[k].shape)} in the checkpoint, "
                       f"{tuple(own[k].shape)} in the model")
    if bad:
        raise InitMismatchError(
            f"--init {path}: the checkpoint does not fit the config's model ({len(bad)} "
            f"tensors differ, e.g. {bad[0]}); use the pretrained model's `model` settings"
        )
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(usable))
    model.load_state_dict(usable, strict=False)
    missing = sorted(set(own) - set(usable))
    return missing, skipped


class _Metrics:
    """``metrics.csv`` in the run dir (rank 0); rows after a resumed step are dropped."""

    BASE: ClassVar[list[str]] = ["step", "epoch", "loss", "lr", "grad_norm", "steps_per_s", "elapsed_s",
            "nonfinite_total", "val_loss"]

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if resume_step is not None and path.is_file():
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            fields = list(rows[0].keys()) if rows else None
            rows = [r for r in rows if r.get("step") and int(r["step"]) <= resume_step]
            if fields:
                with open(path, "w", newline="") as fh:
                    w = csv.DictWriter(fh, fieldnames=fields)
                    w.writeheader()
                    w.writerows(rows)
                self.fields = fields
        elif path.exists():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            extra = sorted(k for k in row if k not in self.BASE)
            self.fields = self.BASE + extra
            with open(self.path, "w", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self.fields).writeheader()
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            w.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


@contextlib.contextmanager
def _stop_on_signals(flag: dict):
    """SIGINT / SIGTERM set ``flag['stop']`` (the loop checkpoints and returns)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}

    def handler(signum, frame):
        if flag.get("stop"):  # second signal: give up at once
            raise KeyboardInterrupt
        flag["stop"] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # pragma: no cover
            pass
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _rng_state(info: DistInfo, drop_gen: torch.Generator) -> dict[str, torch.Tensor | None]:
    return {
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(info.device) if info.device.type == "cuda" else None,
        "drop": drop_gen.get_state(),
    }


def _set_rng_state(state: dict, info: DistInfo, drop_gen: torch.Generator) -> None:
    torch.set_rng_state(state["cpu"])
    if info.device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], info.device)
    drop_gen.set_state(state["drop"])


def _check_resumable(cfg: TrainConfig, ckpt: Path) -> None:
    old = read_metadata(ckpt).get("config") or {}
    new = cfg.to_dict()
    diff = [k for k in ("model", "diffusion", "conditions", "task") if old.get(k) != new.get(k)]
    if diff:
        raise ResumeMismatchError(
            f"cannot resume {ckpt}: the config's {', '.join(diff)} differ from the run's "
            "(use the run's config.yaml, or start a new run with --init)"
        )


# ---------------------------------------------------------------------- train
def train(
    cfg: TrainConfig,
    data: Any = None,
    out: str | Path = "runs/train",
    max_steps: int | None = None,
    max_time_minutes: float | None = None,
    resume: bool = False,
    init: str | Path | None = None,
    *,
    val_data: Any = None,
    denoiser: nn.Module | None = None,
    diffusion: Any = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> RunResult:
    """Train (or fine-tune, or resume) a crystal denoiser.

    Runs single-process, or as one rank of a ``torchrun`` job (``WORLD_SIZE`` / ``RANK`` /
    ``LOCAL_RANK`` in the environment): DDP with the global ``cfg.batch_size`` split evenly
    across ranks, checkpoints and ``metrics.csv`` written by rank 0.

    Each step: draw the step's batch from a seeded per-epoch permutation, standardise and
    randomly drop the conditions, ``loss, logs = diffusion.loss(denoiser, batch, cond, task)``
    (bf16 autocast on CUDA when configured), backward, clip, AdamW, LR schedule, EMA. A
    non-finite loss or gradient skips the step; ``cfg.max_nonfinite`` in a row raise
    :class:`NonFiniteLossError`.

    Args:
        cfg: the run configuration.
        data: the training set: ``None`` (``cfg.data``), a registry name or path for
            ``matgen.data.load_dataset``, a dataset with ``batch(indices)``, or a
            ``CrystalBatch``.
        out: the run directory (``checkpoints/``, ``metrics.csv``, ``config.yaml``).
        max_steps: overrides ``cfg.max_steps`` (the LR schedule's length too).
        max_time_minutes: stop cleanly, with a checkpoint, once this wall-clock time is spent.
        resume: continue from the run directory's newest checkpoint (same step, LR, EMA, data
            order, RNG); without a checkpoint the run starts fresh.
        init: a checkpoint whose weights initialise the model (non-strict: new conditions or
            adapters keep their fresh weights).
        val_data: validation set (default: ``cfg.data.val_split`` of the same dataset).
        denoiser: use this module instead of ``build_denoiser(cfg.model)``.
        diffusion: use this object (with ``.loss``) instead of ``build_diffusion(cfg.diffusion)``.
        device: ``cpu``, ``cuda`` or ``None`` / ``auto``.
        progress: show a progress bar (rank 0).
        log: where one-line messages go (rank 0); ``None`` silences them.

    Returns:
        A :class:`RunResult`.
    """
    info = setup_distributed(device)
    try:
        return _train(
            cfg, info, data, Path(out), max_steps, max_time_minutes, resume, init, val_data,
            denoiser, diffusion, progress, log,
        )
    finally:
        teardown_distributed(info)


def _train(cfg, info, data, run_dir, max_steps, max_time_minutes, resume, init, val_data,
           denoiser, diffusion, progress, log) -> RunResult:
    say = (log if (log is not None and info.is_main) else (lambda _m: None))
    if max_steps is not None:
        cfg = cfg.model_copy(update={"max_steps": int(max_steps)})
    total = cfg.max_steps
    ckpt_root = run_dir / "checkpoints"

    # -------------------------------------------------------------- distillation teacher
    teacher_path = None
    if cfg.distill is not None:
        teacher_path = distill_teacher_path(cfg.distill.teacher)
        if init is None:
            init = teacher_path  # the student starts as the teacher

    # -------------------------------------------------------------- where do we start
    start_ckpt = None
    if resume:
        start_ckpt = latest_checkpoint(ckpt_root)
        if start_ckpt is None:
            say(f"no checkpoint in {ckpt_root}: starting a fresh run")
    elif step_checkpoints(ckpt_root):
        raise FileExistsError(
            f"{run_dir} already holds checkpoints: pass --resume to continue it, "
            "or choose another --out"
        )

    # -------------------------------------------------------------- data
    train_split = cfg.data.train_split
    source, data_desc = _load_source(cfg, data, train_split)
    # fine-tuning keeps the pretrained conditions (their specs and label stats) so the model
    # starts exactly as the checkpoint; a resumed fine-tuning run recorded them
    inherited, inherited_stats = [], {}
    if start_ckpt is not None:
        rec = read_metadata(start_ckpt).get("inherited_conditions") or {}
        inherited_stats = dict(rec.get("stats") or {})
        if rec.get("specs"):
            from matgen.models import ConditionSpec

            inherited = [ConditionSpec(**c) for c in rec["specs"]]
    elif init is not None:
        inherited, inherited_stats = inherited_conditions(init)
    old_names = [sp.name for sp in inherited]
    names = old_names + [n for n in cfg.conditions.names if n not in old_names]
    stats = dataset_stats(source, names, optional=set(old_names))
    if data_desc.get("sha256") is None:
        data_desc["sha256"] = content_sha256(source)
    data_desc["num_crystals"] = len(source)
    val_source = None
    if val_data is not None:
        val_source, _ = _load_source(cfg, val_data, cfg.data.val_split)
    elif cfg.data.val_split and cfg.data.val_batches > 0 and (
        data is None or (isinstance(data, (str, Path)) and not Path(data).is_file())
    ) and cfg.data.val_split != train_split:  # a single file has no other split
        try:
            val_source, _ = _load_source(cfg, data, cfg.data.val_split)
        except (FileNotFoundError, KeyError, ValueError) as e:
            say(f"no validation split {cfg.data.val_split!r} ({e}); training without it")

    # -------------------------------------------------------------- model
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    if denoiser is None or diffusion is None:
        built_model, built_diff = build_components(cfg, stats, inherited)
        denoiser = denoiser if denoiser is not None else built_model
        diffusion = diffusion if diffusion is not None else built_diff
    model = denoiser.to(info.device)
    if hasattr(diffusion, "to"):
        diffusion = diffusion.to(info.device) or diffusion
    if init is not None and start_ckpt is None:
        missing, skipped = load_init_weights(model, init)
        say(f"initialised from {init}: {len(missing)} new tensors, {len(skipped)} skipped")
    distill_meta = None
    if teacher_path is not None:
        diffusion, distill_meta = build_distillation(cfg, teacher_path, info.device)
        say(f"consistency distillation from {teacher_path} ({cfg.distill.intervals} intervals)")
    ema = EMA(model, cfg.ema_decay)
    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=cfg.optim.betas
    )
    scheduler = warmup_cosine(optimizer, cfg.optim.warmup_steps, total, cfg.optim.min_lr_ratio)
    drop_gen = torch.Generator().manual_seed(cfg.seed * 7919 + 17 + info.rank)
    torch.manual_seed(cfg.seed + 1_000_003 * (info.rank + 1))  # noise differs across ranks
    if info.device.type == "cuda":
        torch.cuda.manual_seed(cfg.seed + 1_000_003 * (info.rank + 1))

    step, position, nonfinite_total = 0, 0, 0
    if start_ckpt is not None:
        _check_resumable(cfg, start_ckpt)
        # on CPU: RNG states must stay CPU tensors; load_state_dict moves the rest
        st = load_training_state(start_ckpt, map_location="cpu")
        model.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        optimizer.load_state_dict(st["optimizer"])
        scheduler.load_state_dict(st["scheduler"])
        step, position = int(st["step"]), int(st["position"])
        nonfinite_total = int(st.get("nonfinite_total", 0))
        rngs = st["rng"]
        if len(rngs) == info.world_size:
            _set_rng_state(rngs[info.rank], info, drop_gen)
        else:
            say(f"resuming with {info.world_size} ranks from a {len(rngs)}-rank run: "
                "data order kept, noise RNG reseeded")
        if int(st.get("global_batch", cfg.batch_size)) != cfg.batch_size:
            say("batch_size differs from the checkpoint's: data order continues by position")
        say(f"resumed from {start_ckpt} at step {step}")
    resumed_from = step

    train_model: nn.Module = model
    if info.distributed:
        train_model = DistributedModel(model, info)
    if cfg.compile:
        from torch import _dynamo

        # a graph dynamo cannot trace (e.g. some e3nn objects) runs eagerly instead of failing
        _dynamo.config.suppress_errors = True
        train_model = torch.compile(train_model, dynamic=True)
    loss_fn = _loss_caller(diffusion)
    # a diffusion that drops conditions itself (for CFG) gets them whole
    drop_here = 0.0 if hasattr(diffusion, "drop_conditions") else cfg.conditions.drop_prob
    use_bf16 = info.device.type == "cuda" and cfg.precision in ("bf16", "auto")
    if info.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 parts (and fp32 runs) use TF32
        torch.backends.cudnn.allow_tf32 = True

    # -------------------------------------------------------------- run dir, metadata
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.to_yaml(run_dir / "config.yaml")
    metrics = _Metrics(run_dir / "metrics.csv", step if start_ckpt is not None else None) \
        if info.is_main else None
    diff_stats = getattr(diffusion, "stats", None)
    base_meta = {
        "format": "matgen-checkpoint/1",
        "weights": "ema",
        "config": cfg.to_dict(),
        "task": cfg.task,
        "diffusion": cfg.diffusion.model_dump(mode="json"),
        "stats": diff_stats.model_dump(mode="json") if hasattr(diff_stats, "model_dump") else None,
        "conditions": {n: inherited_stats[n] if n in inherited_stats
                       else stats["conditions"][n] for n in names},
        "inherited_conditions": {"specs": [sp.model_dump(mode="json") for sp in inherited],
                                 "stats": inherited_stats} if inherited else None,
        "cond_drop_prob": cfg.conditions.drop_prob,
        "dataset": data_desc,
        "dataset_stats": stats,
        "versions": library_versions(),
        "world_size": info.world_size,
        "distill": distill_meta,
    }

    # -------------------------------------------------------------- validation
    val_batches: list[CrystalBatch] = []
    if val_source is not None and info.is_main and len(val_source) > 0:
        vstream = IndexStream(len(val_source), cfg.seed + 12345)
        for k in range(cfg.data.val_batches):
            idx = vstream.take(k * cfg.batch_size, min(cfg.batch_size, len(val_source)))
            val_batches.append(val_source.batch(idx.tolist()))

    def validate() -> float | None:
        if not val_batches:
            return None
        total_loss = 0.0
        with torch.random.fork_rng(devices=[info.device] if info.device.type == "cuda" else []):
            torch.manual_seed(cfg.seed + 424242)
            with torch.no_grad(), torch.autocast(
                device_type=info.device.type, dtype=torch.bfloat16, enabled=use_bf16
            ):
                for b in val_batches:
                    b = b.to(info.device)
                    cond = training_conditions(b, names)
                    tasks = ["csp", "gen"] if cfg.task == "both" else [cfg.task]
                    for task in tasks:
                        loss, _ = loss_fn(ema.module, b, cond, task)
                        total_loss += float(loss) / len(tasks)
        return total_loss / len(val_batches)

    def checkpoint(at_step: int) -> Path | None:
        rngs = gather_objects(
            {k: (v.cpu() if v is not None else None) for k, v in
             _rng_state(info, drop_gen).items()}, info)
        path = None
        if info.is_main:
            meta = dict(base_meta, step=at_step, epoch=stream.epoch_of(position),
                        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
            state = {
                "step": at_step,
                "position": position,
                "epoch": stream.epoch_of(position),
                "global_batch": cfg.batch_size,
                "nonfinite_total": nonfinite_total,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "ema": {k: v.detach().cpu() for k, v in ema.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rngs,
            }
            path = save_run_checkpoint(ckpt_root, at_step, ema.module, meta, state,
                                       cfg.keep_checkpoints)
        barrier(info)
        return path

    # -------------------------------------------------------------- loop
    stream = IndexStream(len(source), cfg.seed)
    steps_left = max(0, total - step)
    batches = StepBatches(source, stream, position, step, steps_left, cfg.batch_size,
                          info.rank, info.world_size)
    losses: list[tuple[int, float]] = []
    streak = 0
    last_finite = float("nan")
    window: list[float] = []
    window_logs: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    t_log = t0
    steps_at_log = step
    stopped = "max_steps"
    last_ckpt: Path | None = None
    deadline = None if max_time_minutes is None else t0 + 60.0 * max_time_minutes
    bar = None
    if progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, desc="train", dynamic_ncols=True, smoothing=0.1)
    flag: dict[str, bool] = {}
    params = [p for p in model.parameters() if p.requires_grad]
    clip = cfg.optim.grad_clip if cfg.optim.grad_clip is not None else math.inf
    grad_norm = float("nan")

    with _stop_on_signals(flag):
        it = iterate_batches(batches, cfg.num_workers, pin_memory=info.device.type == "cuda")
        try:
            for batch in it:
                batch = batch.to(info.device) if info.device.type != "cpu" else batch
                task = cfg.task if cfg.task != "both" else ("csp", "gen")[step % 2]
                cond = training_conditions(batch, names, drop_here, drop_gen)
                train_model.train()
                with torch.autocast(device_type=info.device.type, dtype=torch.bfloat16,
                                    enabled=use_bf16):
                    loss, logs = loss_fn(train_model, batch, cond, task)
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(params, clip)
                stop_local = bool(flag.get("stop")) or (
                    deadline is not None and time.perf_counter() >= deadline
                )
                # one reduction (and one host sync) per step: loss, grad norm, stop request
                red = torch.stack([
                    loss.detach().float().reshape(()),
                    gn.detach().float().reshape(()).to(loss.device),
                    torch.tensor(float(stop_local), device=loss.device),
                ])
                red = all_reduce_mean(red, info).tolist()
                loss_v, grad_norm, stop_now = red[0], red[1], red[2] > 0
                if math.isfinite(loss_v) and math.isfinite(grad_norm):
                    optimizer.step()
                    ema.update(model, step)
                    streak = 0
                    last_finite = loss_v
                    window.append(loss_v)
                    for k, v in logs.items():
                        window_logs.setdefault(k, []).append(float(v))
                else:
                    streak += 1
                    nonfinite_total += 1
                    if streak >= cfg.max_nonfinite:
                        raise NonFiniteLossError(
                            f"{streak} consecutive steps with a non-finite loss or gradient "
                            f"(last at step {step + 1}, {nonfinite_total} in all; last finite "
                            f"loss {last_finite:.4g}): lower optim.lr, tighten optim.grad_clip "
                            "or check the data (matgen data validate)"
                        )
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                position += cfg.batch_size
                losses.append((step, loss_v))

                if bar is not None:
                    bar.update(1)
                    if step % max(1, min(cfg.log_every, 10)) == 0:
                        bar.set_postfix(loss=f"{loss_v:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                final = stop_now or step >= total
                want_ckpt = final or step % cfg.checkpoint_every == 0
                if info.is_main and (step % cfg.log_every == 0 or final):
                    now = time.perf_counter()
                    row = {
                        "step": step,
                        "epoch": stream.epoch_of(position),
                        "loss": (sum(window) / len(window)) if window else float("nan"),
                        "lr": scheduler.get_last_lr()[0],
                        "grad_norm": grad_norm,
                        "steps_per_s": (step - steps_at_log) / max(1e-9, now - t_log),
                        "elapsed_s": now - t0,
                        "nonfinite_total": nonfinite_total,
                    }
                    if want_ckpt:
                        v = validate()
                        if v is not None:
                            row["val_loss"] = v
                    row.update({k: sum(v) / len(v) for k, v in window_logs.items() if v})
                    metrics.write(row)
                    window.clear()
                    window_logs.clear()
                    t_log, steps_at_log = now, step
                if want_ckpt:
                    last_ckpt = checkpoint(step)
                if final:
                    if stop_now:
                        stopped = "interrupted" if flag.get("stop") else "max_time"
                    break
        finally:
            if hasattr(it, "close"):
                it.close()
            if bar is not None:
                bar.close()

    if steps_left == 0 and start_ckpt is not None:
        last_ckpt = start_ckpt
    elapsed = time.perf_counter() - t0
    done = step - resumed_from
    if stopped != "max_steps":
        say(f"stopped ({stopped}) at step {step}; checkpoint {last_ckpt}")
    return RunResult(
        run_dir=run_dir,
        step=step,
        checkpoint=last_ckpt if info.is_main else None,
        stopped=stopped,
        losses=losses,
        nonfinite_steps=nonfinite_total,
        elapsed_s=elapsed,
        steps_per_s=done / elapsed if elapsed > 0 else 0.0,
        resumed_from=resumed_from,
    )




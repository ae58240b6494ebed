"""The training loop, generic over a denoiser and a :class:`TrainingObjective` (plain diffusion
or consistency distillation).

:func:`train` sets a run up (data, model, objective, EMA, optimizer; resume or init), then
steps: each step draws the step's batch, computes the objective's loss (bf16 autocast on CUDA
when configured), backpropagates, clips, applies AdamW, the LR schedule and the EMA. Metrics
rows, validation and checkpoints follow at their intervals; the run state (step, data
position, skip counters, RNG) is in every checkpoint, so a resumed run continues exactly.
Each step's values reach the host in one sync; with ``cfg.sync_every = N > 1`` in one every N
steps (:func:`_queue_step`, :func:`_flush`), so the CPU queues the next steps meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from matgen._progress import Progress
from matgen.crystal import CrystalBatch
from matgen.training._checkpoint import save_run_checkpoint
from matgen.training._components import (
    InitMismatchError,
    ResumeMismatchError,
    TrainingObjective,
    build_components,
    condition_specs,
    distill_teacher_path,
    inherited_conditions,
    load_init_weights,
)
from matgen.training._conditions import training_conditions
from matgen.training._config import TrainConfig, step_task
from matgen.training._data import (
    StepBatches,
    iterate_batches,
)
from matgen.training._distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    gather_objects,
    setup_distributed,
    teardown_distributed,
)
from matgen.training._metrics import LogWindow, MetricsCSV
from matgen.training._schedule import CosineFactor
from matgen.training._setup import (
    Run,
    RunState,
    TrainCall,
    build_run,
    compile_fallback,
    resume_from,
    rng_state,
    start_checkpoint,
    wrap_model,
)

__all__ = [
    "InitMismatchError",
    "NonFiniteLossError",
    "ResumeMismatchError",
    "RunResult",
    "RunState",
    "TrainingObjective",
    "build_components",
    "condition_specs",
    "inherited_conditions",
    "load_init_weights",
    "train",
]


class NonFiniteLossError(RuntimeError):
    """Raised after ``max_nonfinite`` consecutive steps with a non-finite loss or gradient."""


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
        unusable_entries: entries of the training split skipped as bad data (named in the
            log; crystals over ``data.max_atoms`` are not counted): the run used the others.
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
    unusable_entries: int = 0


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

    Each step: draw the step's batch from a seeded per-epoch permutation, take its condition
    labels, ``loss, logs = objective.loss(denoiser, batch, cond=cond, task=task)`` (the
    objective drops conditions for classifier-free guidance; bf16 autocast on CUDA when
    configured), backward, clip, AdamW, LR schedule, EMA. A non-finite loss or gradient skips
    the step; ``cfg.max_nonfinite`` in a row raise :class:`NonFiniteLossError`.

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
        diffusion: a :class:`TrainingObjective` to use instead of
            ``build_diffusion(cfg.diffusion)`` (used as is, on its own device).
        device: ``cpu``, ``cuda`` or ``None`` / ``auto``.
        progress: show a progress bar (rank 0).
        log: where one-line messages go (rank 0); ``None`` silences them.

    Returns:
        A :class:`RunResult`.
    """
    if max_steps is not None:
        cfg = cfg.model_copy(update={"max_steps": int(max_steps)})
    if cfg.optim.schedule == "time" and max_time_minutes is None:
        raise ValueError("optim.schedule: time needs a time budget (--max-time MINUTES)")
    call = TrainCall(data, max_time_minutes, resume, init, val_data, denoiser, diffusion, progress)
    info = setup_distributed(device)
    try:
        return _train(cfg, info, Path(out), call, log)
    finally:
        teardown_distributed(info)


def _silent(_msg: str) -> None:
    pass


def _cosine(run: Run) -> CosineFactor:
    """The schedule's factor object (one, shared by the parameter groups)."""
    return run.scheduler.lr_lambdas[0]


# ---------------------------------------------------------------------- one step
def _autocast(run: Run):
    return torch.autocast(device_type=run.info.device.type, dtype=torch.bfloat16,
                          enabled=run.use_bf16)


def _forward_backward(run: Run, state: RunState, batch: CrystalBatch):
    """The step's loss, backward and gradient clipping: ``(loss, logs, grad norm)``, tensors
    on the device (nothing read by the host)."""
    cfg, info = run.cfg, run.info
    batch = batch.to(info.device) if info.device.type != "cpu" else batch
    task = step_task(cfg, state.step)
    cond = training_conditions(batch, run.names, cfg.conditions.drop_all_prob)
    run.train_model.train()
    with compile_fallback(cfg):
        with _autocast(run):
            loss, logs = run.objective.loss(run.train_model, batch, cond=cond, task=task)
        loss.backward()
    clip = cfg.optim.grad_clip if cfg.optim.grad_clip is not None else math.inf
    return loss, logs, torch.nn.utils.clip_grad_norm_(run.params, clip)


def _step(run: Run, state: RunState, batch: CrystalBatch, window: LogWindow,
          stop_requested: Callable[[], bool],
          time_share: Callable[[], float] | None = None) -> tuple[float, float, bool]:
    """One optimizer step; ``(loss, grad norm, stop)`` averaged over ranks (stop: any rank
    asked). A non-finite loss or gradient skips the update. With a time-driven schedule,
    ``time_share()`` (the part of the budget spent) is averaged over ranks too, so every rank
    steps with the same learning rate."""
    cfg, info = run.cfg, run.info
    loss, logs, gn = _forward_backward(run, state, batch)
    # one reduction (and one host sync) per step: loss, grad norm, stop request, time spent and
    # the objective's logs (0-dim tensors or floats)
    names = list(logs)
    red = torch.stack([
        loss.detach().float().reshape(()),
        gn.detach().float().reshape(()).to(loss.device),
        torch.tensor(float(stop_requested()), device=loss.device),
        torch.tensor(time_share() if time_share is not None else 0.0, device=loss.device),
        *(torch.as_tensor(logs[k], dtype=torch.float32, device=loss.device).reshape(())
          for k in names),
    ])
    loss_v, grad_norm, stop, share, *log_vals = all_reduce_mean(red, info).tolist()
    logs = dict(zip(names, log_vals, strict=True))
    if time_share is not None:
        _cosine(run).time_share = min(1.0, share)
    finite = math.isfinite(loss_v) and math.isfinite(grad_norm)
    if finite:
        run.optimizer.step()
        run.ema.update(run.model, state.step)
    _book_step(cfg, state, window, state.step, loss_v, logs, finite)
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    state.step += 1
    state.position += cfg.batch_size
    return loss_v, grad_norm, stop > 0


def _book_step(cfg: TrainConfig, state: RunState, window: LogWindow, step: int, loss_v: float,
               logs: dict[str, float], finite: bool) -> None:
    """A step's values, once read by the host: the log window and the streak (finite), or the
    non-finite count; the loss record ``(step + 1, loss)``."""
    if finite:
        state.streak, state.last_finite = 0, loss_v
        window.add(loss_v, logs)
    else:
        _count_nonfinite(cfg, state, step)
    state.losses.append((step + 1, loss_v))


def _count_nonfinite(cfg: TrainConfig, state: RunState, step: int) -> None:
    state.streak += 1
    state.nonfinite_total += 1
    if state.streak >= cfg.max_nonfinite:
        raise NonFiniteLossError(
            f"{state.streak} consecutive steps with a non-finite loss or gradient "
            f"(last at step {step + 1}, {state.nonfinite_total} in all; last finite "
            f"loss {state.last_finite:.4g}): lower optim.lr, tighten optim.grad_clip "
            "or check the data (matgen data validate)"
        )


# ---------------------------------------------------------------------- deferred host syncs
@dataclass
class _Pending:
    """Steps run since the last host sync (``sync_every > 1``): per step its index, the
    objective's log names (in order, with which of them are device tensors), a device vector
    ``[skipped, loss, grad norm, *tensor logs]`` and the logs that are host floats."""

    steps: list[tuple[int, list[str], list[bool]]] = field(default_factory=list)
    device: list[torch.Tensor] = field(default_factory=list)
    host: list[float] = field(default_factory=list)


def _deferred(run: Run, say: Callable[[str], None]) -> bool:
    """Whether the loop syncs every ``sync_every`` steps: the optimizer must skip a non-finite
    step on the device (a fused AdamW reading ``found_inf``)."""
    if run.cfg.sync_every <= 1:
        return False
    if getattr(run.optimizer, "_step_supports_amp_scaling", False):
        return True
    say(f"sync_every {run.cfg.sync_every}: the optimizer cannot skip a non-finite step on "
        "the device (no fused AdamW here); syncing every step")
    return False


def _sync_due(cfg: TrainConfig, step: int) -> bool:
    """After ``step`` steps: every ``sync_every``, and before every metrics row, checkpoint
    (with validation) and the last step, so they fall on the same steps as with 1."""
    return any(step % k == 0 for k in (cfg.sync_every, cfg.log_every, cfg.checkpoint_every)) \
        or step >= cfg.max_steps


def _queue_step(run: Run, state: RunState, batch: CrystalBatch, pending: _Pending) -> None:
    """One optimizer step without a host sync. A non-finite loss or grad norm (on any rank:
    its flag is averaged over ranks on the device) sets the fused AdamW's ``found_inf``, which
    skips the update and its step counter, and zeroes the EMA's weight; the values are read
    at the next :func:`_flush`."""
    loss, logs, gn = _forward_backward(run, state, batch)
    loss = loss.detach().float().reshape(())
    gn = gn.detach().float().reshape(()).to(loss.device)
    bad = all_reduce_mean((~(torch.isfinite(loss) & torch.isfinite(gn))).float(), run.info)
    skipped = (bad > 0).float()
    run.optimizer.found_inf = skipped
    run.optimizer.step()
    run.ema.update(run.model, state.step, finite=1.0 - skipped)
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    names = list(logs)
    on_dev = [torch.is_tensor(logs[k]) for k in names]
    pending.device.append(torch.stack([
        skipped, loss, gn,
        *(logs[k].detach().float().reshape(()).to(loss.device)
          for k, d in zip(names, on_dev, strict=True) if d),
    ]))
    pending.host.extend(float(logs[k]) for k, d in zip(names, on_dev, strict=True) if not d)
    pending.steps.append((state.step, names, on_dev))
    state.step += 1
    state.position += run.cfg.batch_size


def _flush(run: Run, state: RunState, window: LogWindow, pending: _Pending,
           stop_requested: Callable[[], bool],
           time_share: Callable[[], float] | None) -> tuple[float, float, bool, int]:
    """The host sync: one reduction over ranks and one read of the pending steps' values with
    the stop request and the time spent; then each step's bookkeeping, in order, as
    :func:`_step` does it. Returns ``(last loss, last grad norm, stop, steps read)``."""
    host = [*pending.host, float(stop_requested()),
            time_share() if time_share is not None else 0.0]
    dev = torch.cat(pending.device)
    vals = all_reduce_mean(torch.cat([dev, torch.tensor(host, device=dev.device)]),
                           run.info).tolist()
    *dvals, stop, share = vals
    hvals = dvals[dev.numel():]
    if time_share is not None:
        _cosine(run).time_share = min(1.0, share)
    i = h = 0
    loss_v = grad_norm = math.nan
    for step, names, on_dev in pending.steps:
        skipped, loss_v, grad_norm = dvals[i:i + 3]
        i += 3
        logs = {}
        for k, d in zip(names, on_dev, strict=True):
            if d:
                logs[k], i = dvals[i], i + 1
            else:
                logs[k], h = hvals[h], h + 1
        _book_step(run.cfg, state, window, step, loss_v, logs, skipped == 0.0)
    done = len(pending.steps)
    pending.steps.clear()
    pending.device.clear()
    pending.host.clear()
    return loss_v, grad_norm, stop > 0, done


# ---------------------------------------------------------------------- validation, checkpoints
def _validate(run: Run) -> float | None:
    """Mean loss of the EMA model over the validation batches (fixed noise seed, the training
    RNG untouched); ``None`` without validation data."""
    if not run.val_batches:
        return None
    cfg, info = run.cfg, run.info
    tasks = ["csp", "gen"] if cfg.task == "both" else [cfg.task]
    total = 0.0
    with torch.random.fork_rng(devices=[info.device] if info.device.type == "cuda" else []):
        torch.manual_seed(cfg.seed + 424242)
        with torch.no_grad(), _autocast(run):
            for b in run.val_batches:
                b = b.to(info.device)
                cond = training_conditions(b, run.names)
                for task in tasks:
                    loss, _ = run.objective.loss(run.ema.module, b, cond=cond, task=task)
                    total += float(loss) / len(tasks)
    return total / len(run.val_batches)


def _checkpoint(run: Run, state: RunState) -> Path | None:
    """Write ``step_N`` (rank 0, with every rank's RNG state); all ranks wait for it."""
    info = run.info
    rngs = gather_objects(
        {k: (v.cpu() if v is not None else None) for k, v in rng_state(info).items()}, info)
    path = None
    if info.is_main:
        epoch = run.stream.epoch_of(state.position)
        meta = dict(run.base_meta, step=state.step, epoch=epoch,
                    created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
        training_state = {
            "step": state.step,
            "position": state.position,
            "epoch": epoch,
            "global_batch": run.cfg.batch_size,
            "nonfinite_total": state.nonfinite_total,
            "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
            "ema": {k: v.detach().cpu() for k, v in run.ema.state_dict().items()},
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "rng": rngs,
        }
        path = save_run_checkpoint(run.ckpt_root, state.step, run.ema.module, meta,
                                   training_state, run.cfg.keep_checkpoints)
    barrier(info)
    return path


def _metrics_row(run: Run, state: RunState, window: LogWindow, grad_norm: float,
                 validate: bool) -> dict[str, Any]:
    row = window.row(state.step, epoch=run.stream.epoch_of(state.position),
                     lr=run.scheduler.get_last_lr()[0], grad_norm=grad_norm,
                     nonfinite_total=state.nonfinite_total)
    if validate:
        v = _validate(run)
        if v is not None:
            row["val_loss"] = v
    return row


# ---------------------------------------------------------------------- the loop
def _progress_bar(run: Run, state: RunState, progress: bool) -> Progress | None:
    """Steps done (rank 0): a bar on a terminal, plain periodic lines in a log. A time-driven
    schedule has no meaningful step total, so its lines show steps and elapsed time only."""
    if not (progress and run.info.is_main):
        return None
    total = None if run.cfg.optim.schedule == "time" else run.cfg.max_steps
    bar = Progress("train", total=total, unit="steps")
    bar.update(done=state.step)  # a resumed run's earlier steps are not this call's rate
    return bar.start()


def _run_steps(run: Run, state: RunState, metrics: MetricsCSV | None, progress: bool,
               max_time_minutes: float | None,
               deferred: bool = False) -> tuple[str, Path | None, float]:
    """Steps until ``max_steps``, the time limit or a signal; metrics rows every ``log_every``
    steps, checkpoints (and validation) every ``checkpoint_every`` and at the end. With
    ``deferred`` the host syncs only where :func:`_sync_due` says (``cfg.sync_every``).

    Returns:
        ``(stopped, last checkpoint or None, elapsed seconds)``.
    """
    cfg, info = run.cfg, run.info
    batches = StepBatches(run.source, run.stream, state.position, state.step,
                          max(0, cfg.max_steps - state.step), cfg.batch_size, info.rank,
                          info.world_size)
    window = LogWindow.start(state.step)
    deadline = None if max_time_minutes is None else window.t0 + 60.0 * max_time_minutes
    flag: dict[str, bool] = {}

    def stop_requested() -> bool:
        return bool(flag.get("stop")) or (deadline is not None and time.perf_counter() >= deadline)

    time_share = None
    if cfg.optim.schedule == "time" and max_time_minutes is not None:
        _cosine(run).start_call()
        budget = 60.0 * max_time_minutes

        def time_share() -> float:
            return (time.perf_counter() - window.t0) / budget

    stopped, last_ckpt = "max_steps", None
    pending = _Pending() if deferred else None
    bar = _progress_bar(run, state, progress)
    with _stop_on_signals(flag):
        it = iterate_batches(batches, cfg.num_workers, pin_memory=info.device.type == "cuda")
        try:
            for batch in it:
                if pending is None:
                    loss_v, grad_norm, stop_now = _step(run, state, batch, window,
                                                        stop_requested, time_share)
                    done = 1
                else:
                    _queue_step(run, state, batch, pending)
                    if not _sync_due(cfg, state.step):
                        continue
                    loss_v, grad_norm, stop_now, done = _flush(run, state, window, pending,
                                                               stop_requested, time_share)
                if bar is not None:
                    bar.advance(done)
                    every = max(1, min(cfg.log_every, 10))
                    if state.step // every > (state.step - done) // every:
                        bar.update(desc=f"train (loss {loss_v:.4f}, "
                                        f"lr {run.scheduler.get_last_lr()[0]:.2e})",
                                   announce=False)
                final = stop_now or state.step >= cfg.max_steps
                want_ckpt = final or state.step % cfg.checkpoint_every == 0
                if metrics is not None and (state.step % cfg.log_every == 0 or final):
                    metrics.write(_metrics_row(run, state, window, grad_norm, want_ckpt))
                if want_ckpt:
                    last_ckpt = _checkpoint(run, state)
                if final:
                    if stop_now:
                        stopped = "interrupted" if flag.get("stop") else "max_time"
                    break
        finally:
            if hasattr(it, "close"):
                it.close()
            if bar is not None:
                bar.close(ok=not flag.get("stop"))
    return stopped, last_ckpt, time.perf_counter() - window.t0


def _train(cfg: TrainConfig, info: DistInfo, run_dir: Path, call: TrainCall, log) -> RunResult:
    say = log if (log is not None and info.is_main) else _silent
    teacher_path = None
    init = call.init
    if cfg.distill is not None:
        teacher_path = distill_teacher_path(cfg.distill.teacher)
        if init is None:
            init = teacher_path  # the student starts as the teacher
    start_ckpt = start_checkpoint(run_dir, call.resume, say)
    run = build_run(cfg, info, run_dir, call, init, start_ckpt, teacher_path, say)
    state = RunState()
    if start_ckpt is not None:
        resume_from(run, state, start_ckpt)
    resumed_from = state.step
    wrap_model(run)
    metrics = None
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.to_yaml(run_dir / "config.yaml")
        metrics = MetricsCSV(run_dir / "metrics.csv",
                             state.step if start_ckpt is not None else None)
    stopped, last_ckpt, elapsed = _run_steps(run, state, metrics, call.progress,
                                             call.max_time_minutes, _deferred(run, say))
    if resumed_from >= cfg.max_steps and start_ckpt is not None:
        last_ckpt = start_ckpt
    if stopped != "max_steps":
        say(f"stopped ({stopped}) at step {state.step}; checkpoint {last_ckpt}")
    done = state.step - resumed_from
    return RunResult(
        run_dir=run_dir,
        step=state.step,
        checkpoint=last_ckpt if info.is_main else None,
        stopped=stopped,
        losses=state.losses,
        nonfinite_steps=state.nonfinite_total,
        elapsed_s=elapsed,
        steps_per_s=done / elapsed if elapsed > 0 else 0.0,
        resumed_from=resumed_from,
        unusable_entries=int(run.base_meta.get("dataset", {}).get("unusable_entries", 0)),
    )


# ---------------------------------------------------------------------- helpers
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

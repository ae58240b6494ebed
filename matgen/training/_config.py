"""Training configuration: pydantic models loaded from YAML."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from matgen.diffusion import DiffusionConfig
from matgen.models import ConditionSpec, DenoiserConfig


class ConfigFileError(ValueError):
    """A config file that cannot be read as a YAML mapping (one line naming the file)."""


def config_error_line(exc: Any) -> str:
    """A pydantic ``ValidationError`` as one line: ``key.path: message (got VALUE)`` per
    problem, joined with ``; ``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(top level)"
        msg = " ".join(str(err.get("msg", "invalid")).split())
        got = ""
        if err.get("type") not in ("extra_forbidden", "missing") and "input" in err:
            shown = repr(err["input"])
            got = f" (got {shown if len(shown) <= 40 else shown[:37] + '...'})"
        parts.append(f"{loc}: {msg}{got}")
    return "; ".join(parts)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DataConfig(_Strict):
    """Where the training crystals come from.

    Attributes:
        dataset: a registry name (``mp20``, ``perov5``, ``carbon24``, ``mpts52``) or a path to a
            CDVAE-style CSV / CIF folder / extxyz file (see ``matgen.data.load_dataset``).
        train_split: split used for training (perov-5 and carbon-24 ship no train split here:
            use ``val``).
        val_split: split used for the validation loss, or ``None`` for no validation.
        max_atoms: crystals with more atoms are dropped (``None`` keeps all).
        val_batches: number of fixed validation batches evaluated at each checkpoint.
        reduce: ``niggli`` (or ``primitive``) reduces every cell on load, the canonical cell a
            basis-dependent denoiser (``model.arch: dense``) needs; ``None`` keeps the file's cell.
        train_limit: train on a random subset of this many training crystals (drawn with
            ``seed``, after ``max_atoms``), for learning curves and probes of the small-data
            regime; ``None`` keeps all. Validation is unaffected.
        substitute: share of the training crystals that, each time they are drawn, get one
            element swapped for one that takes its place in known crystals (same-charge ionic
            substitution statistics, pymatgen's ``SubstitutionProbability``), the cell rescaled
            by atomic radii and the property labels dropped (``matgen.training._substitute``);
            0 trains on the crystals as they are.
    """

    dataset: str = "perov5"
    train_split: str = "train"
    val_split: str | None = None
    max_atoms: int | None = None
    val_batches: int = Field(default=4, ge=0)
    reduce: Literal["niggli", "primitive"] | None = None
    train_limit: int | None = Field(default=None, ge=1)
    substitute: float = Field(default=0.0, ge=0.0, le=1.0)


class ConditionConfig(_Strict):
    """Property conditioning for classifier-free guidance.

    A new property needs only its CSV column name here. A plain name is a scalar condition
    whose mean and standard deviation (the denoiser's normalisation) come from the training
    set; a mapping is a :class:`matgen.nn.ConditionSpec` (e.g. ``{name: spacegroup.number,
    kind: categorical, num_classes: 231}``). Missing labels (NaN) and dropped conditions
    reach the denoiser as NaN ("unconditioned").

    Attributes:
        properties: the conditions (CSV column names or ``ConditionSpec`` mappings).
        drop_prob: probability that a crystal's condition is dropped in a training step
            (sets ``diffusion.cond_dropout``), each condition on its own.
        drop_all_prob: probability that all conditions of a crystal are dropped together
            first (0 = never). Sampling without conditions (de novo and CSP by default) gives
            the denoiser every condition as NaN, which per-condition dropping alone shows it
            on only ``drop_prob ** k`` of the crystals for k conditions (0.8% for three at 0.2).
    """

    properties: list[str | ConditionSpec] = Field(default_factory=list)
    drop_prob: float = Field(default=0.2, ge=0.0, le=1.0)
    drop_all_prob: float = Field(default=0.0, ge=0.0, le=1.0)

    @property
    def names(self) -> list[str]:
        return [p if isinstance(p, str) else p.name for p in self.properties]


class OptimConfig(_Strict):
    """AdamW with linear warm-up and cosine decay.

    Attributes:
        lr: peak learning rate.
        weight_decay: AdamW decoupled weight decay.
        betas: AdamW betas.
        warmup_steps: linear warm-up from 0 to ``lr``.
        min_lr_ratio: the cosine decays from ``lr`` to ``lr * min_lr_ratio`` at ``max_steps``.
        grad_clip: max global gradient L2 norm (``None``: no clipping).
        schedule: ``steps``: the cosine ends at ``max_steps``; ``time``: it ends when the
            call's ``--max-time`` is spent, or at ``max_steps`` if that comes first (a fixed GPU
            budget, e.g. the equal-budget ablations, without guessing the step rate; a resumed
            run spreads the rest of its cosine over the new call's time).
    """

    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(default=100, ge=0)
    min_lr_ratio: float = Field(default=0.05, ge=0, le=1)
    schedule: Literal["steps", "time"] = "steps"
    grad_clip: float | None = 1.0


class DistillConfig(_Strict):
    """Consistency distillation of a trained model into a few-step sampler
    (:class:`matgen.diffusion.ConsistencyDistillation`).

    The student has the teacher's architecture and starts from its weights (``--init`` is
    implied); ``model`` and ``diffusion`` of the config must describe the teacher.

    Attributes:
        teacher: the teacher checkpoint (folder or ``model.safetensors``), or ``default`` for
            the shipped default model.
        intervals: N, pieces of ``[t_min, 1]`` the teacher's probability-flow ODE is cut into.
        coord_scale: fractional-coordinate differences are measured in units of this.
        lattice_scale: lattice differences are measured in units of this times the lattice
            prior's standard deviation.
    """

    teacher: str = "default"
    intervals: int = Field(default=40, ge=1)
    coord_scale: float = Field(default=0.05, gt=0)
    lattice_scale: float = Field(default=1.0, gt=0)


class TrainConfig(_Strict):
    """Everything a training run needs; ``TrainConfig.from_yaml(path)`` reads one.

    ``model`` and ``diffusion`` are :class:`matgen.models.DenoiserConfig` and
    :class:`matgen.diffusion.DiffusionConfig`.

    Attributes:
        data: dataset and splits.
        model: denoiser hyper-parameters (``matgen.models.DenoiserConfig``).
        diffusion: noise processes (``matgen.diffusion.DiffusionConfig``).
        task: ``csp`` (atom types given), ``gen`` (de novo) or ``both`` (steps of both tasks).
        csp_share: ``both``: the share of steps that train CSP (0.5: alternating steps), spread
            evenly over the run (see :func:`step_task`).
        conditions: property conditioning.
        optim: optimiser and LR schedule.
        ema_decay: decay of the exponential moving average of the weights (the sampling
            weights); warmed up as ``min(decay, (1 + step) / (10 + step))``.
        batch_size: global batch size in crystals (split evenly across DDP ranks).
        max_steps: optimiser steps of the run (also the end of the cosine schedule).
        checkpoint_every: steps between checkpoints (one is always written at the end).
        keep_checkpoints: number of ``step_N`` checkpoints kept (``None`` keeps all).
        log_every: steps between rows of ``metrics.csv``.
        precision: ``bf16`` autocast on CUDA (fp32 on CPU), ``fp32``, or ``auto`` (= bf16).
        compile: wrap the denoiser with ``torch.compile``.
        seed: seeds weights, data order and noise.
        num_workers: DataLoader worker processes building batches (0: a background thread).
        max_nonfinite: abort after this many consecutive steps with a non-finite loss or
            gradient (each is skipped).
        sync_every: steps between host syncs (1: every step, as ever). ``N > 1`` lets the CPU
            queue the next steps while the GPU runs: a non-finite step is skipped on the device
            (the fused AdamW's ``found_inf``, the EMA's weight times a finite flag), loss, grad
            norm and logs are read every N steps (and before every metrics row, checkpoint,
            validation and the last step, so those fall on the same steps), and a stop request
            (signal, ``--max-time``) or the time-driven schedule's clock is seen at the next
            sync, up to N - 1 steps late. Needs a CPU or CUDA device (else every step syncs).
        distill: consistency distillation from a teacher checkpoint instead of denoising
            training (``None``: ordinary training).
        ddp_find_unused_parameters: DDP: let a step leave parameters without a gradient. Off
            by default: matgen's losses keep every parameter in the graph (CSP steps add a zero
            type term), and the flag costs every step an extra autograd-graph traversal; turn it
            on for a custom objective that does leave parameters out (DDP then says so).
        ddp_bucket_view: DDP: gradients as views into its all-reduce buckets
            (``gradient_as_bucket_view``): the same gradients without a copy of each one into
            and out of the buckets per step (fewer kernels; measured by
            ``benchmarks/device/ddp_scaling.sh`` with ``SET2``).
    """

    data: DataConfig = Field(default_factory=DataConfig)
    model: DenoiserConfig = Field(default_factory=DenoiserConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    task: Literal["csp", "gen", "both"] = "csp"
    csp_share: float = Field(default=0.5, gt=0.0, lt=1.0)
    conditions: ConditionConfig = Field(default_factory=ConditionConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    ema_decay: float = Field(default=0.999, ge=0.0, lt=1.0)
    batch_size: int = Field(default=64, ge=1)
    max_steps: int = Field(default=1000, ge=1)
    checkpoint_every: int = Field(default=500, ge=1)
    keep_checkpoints: int | None = Field(default=5, ge=1)
    log_every: int = Field(default=10, ge=1)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: bool = False
    seed: int = 0
    num_workers: int = Field(default=0, ge=0)
    max_nonfinite: int = Field(default=20, ge=1)
    sync_every: int = Field(default=1, ge=1)
    distill: DistillConfig | None = None
    ddp_find_unused_parameters: bool = False
    ddp_bucket_view: bool = False

    @model_validator(mode="after")
    def _conditions_in_one_place(self) -> TrainConfig:
        if self.model.conditions:
            raise ValueError(
                "put conditions under `conditions.properties`, not `model.conditions` (the "
                "denoiser's condition specs are filled from the data's statistics)"
            )
        names = self.conditions.names
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate condition names in {names}")
        if "cond_dropout" in self.diffusion.model_fields_set and (
            self.diffusion.cond_dropout != self.conditions.drop_prob
        ):
            raise ValueError(
                "diffusion.cond_dropout and conditions.drop_prob disagree: set only "
                "conditions.drop_prob"
            )
        if self.diffusion.cond_dropout != self.conditions.drop_prob:
            self.diffusion = self.diffusion.model_copy(
                update={"cond_dropout": self.conditions.drop_prob}
            )
        if (self.diffusion.self_condition > 0) != self.model.self_condition:
            raise ValueError(
                "self-conditioning needs both model.self_condition: true (the network's input) "
                "and diffusion.self_condition > 0 (how often training uses it), or neither"
            )
        return self

    # ------------------------------------------------------------------ io
    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read and validate a YAML file (unknown keys are an error).

        Raises:
            ConfigFileError: the file is unreadable, not YAML, empty or not a mapping (one
                line naming the file, and the line and column of a syntax error).
            pydantic.ValidationError: a key is unknown or a value is wrong (see
                :func:`config_error_line`).
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigFileError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})"
                                  ) from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            what = getattr(e, "problem", None) or type(e).__name__
            raise ConfigFileError(f"{path}: not valid YAML{where}: {what}") from None
        except (ValueError, RecursionError) as e:  # e.g. an out-of-range timestamp
            raise ConfigFileError(f"{path}: not valid YAML: {e}") from None
        if raw is None:
            raise ConfigFileError(f"{path}: the config is empty; start from one in "
                                  "configs/train/ (e.g. tiny.yaml)")
        if not isinstance(raw, dict):
            raise ConfigFileError(f"{path}: a training config must be a YAML mapping of keys "
                                  f"(got a {type(raw).__name__})")
        return cls.model_validate(raw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (the form stored in checkpoint metadata)."""
        return self.model_dump(mode="json")

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def step_task(cfg: TrainConfig, step: int) -> str:
    """The task of optimizer step ``step``: ``cfg.task``, or with ``both`` CSP on a
    ``csp_share`` of the steps, spread evenly (0.5: ``csp``, ``gen``, ``csp``, ...)."""
    if cfg.task != "both":
        return cfg.task
    gen = 1.0 - cfg.csp_share
    return "gen" if math.floor((step + 1) * gen + 1e-9) > math.floor(step * gen + 1e-9) else "csp"

"""What the training loop trains: the denoiser and its objective (plain diffusion or consistency
distillation) built from a config, conditions inherited from a checkpoint, initial weights and
the optimizer.

The loss protocol (:class:`TrainingObjective`) is the one contract between the loop and an
objective: ``loss(denoiser, batch, cond=..., task=...) -> (loss, logs)`` with the conditions
given whole (the objective drops them for classifier-free guidance itself, as
:class:`matgen.diffusion.CrystalDiffusion` and :class:`matgen.diffusion.ConsistencyDistillation`
do), and ``stats``, the data statistics a sampler rebuilds the diffusion from (``None`` for an
objective that has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

from matgen.crystal import CrystalBatch
from matgen.generate import DEFAULT_MODEL_DIR, cached_diffusion, resolve_checkpoint, weights_id
from matgen.training._checkpoint import read_weights
from matgen.training._config import TrainConfig
from matgen.training._schedule import warmup_cosine


class TrainingObjective(Protocol):
    """The loss the loop minimises (see the module docstring)."""

    stats: Any

    def loss(
        self,
        denoiser: Any,
        batch: CrystalBatch,
        cond: dict[str, torch.Tensor] | None = None,
        task: Literal["csp", "gen"] = "csp",
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``(scalar loss, float logs)`` of one batch for ``task``."""
        ...


class ResumeMismatchError(ValueError):
    """``resume`` with a config whose model, diffusion or conditions differ from the run's."""


class TrainDataError(ValueError):
    """The training data cannot be used (missing, unreadable, no usable crystal, a condition
    without labels); one line."""


class InitMismatchError(ResumeMismatchError):
    """``init`` with a checkpoint whose network (outside the condition embeddings) does not
    fit the config's model: fine-tuning it would silently train from scratch. A usage error
    like :class:`ResumeMismatchError` (the CLI exits with code 2)."""


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
    from matgen.models import META, CheckpointError, ConditionSpec, read_checkpoint_json

    folder = resolve_checkpoint(path)
    raw = read_checkpoint_json(folder / META)
    den = raw.get("denoiser") or {}
    if not isinstance(den, dict):
        raise CheckpointError(f"{folder / 'model.json'}: 'denoiser' must be a JSON object")
    try:
        specs = [ConditionSpec(**c) for c in (den.get("conditions") or [])]
    except (TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{folder / 'model.json'}: invalid denoiser.conditions "
                              f"({str(exc).splitlines()[0][:200]})") from None
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


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _block_index(key: str) -> int | None:
    """``K`` of a ``blocks.K.*`` tensor name, else None."""
    parts = key.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None


def _grown_blocks(model: nn.Module, state: dict) -> set[int]:
    """The model's message-passing blocks past the checkpoint's last one, when every block
    type there can start as the identity (``zero_output_``); else none (a mismatch)."""
    have = {_block_index(k) for k in state} - {None}
    blocks = getattr(model, "blocks", None)
    if not have or not isinstance(blocks, nn.ModuleList) or have != set(range(len(have))):
        return set()
    new = set(range(len(have), len(blocks)))
    return new if all(hasattr(blocks[i], "zero_output_") for i in new) else set()


#: modules a checkpoint may lack, wherever they sit (``cond.*``, ``blocks.K.edge_out.*``)
_OPTIONAL = frozenset({"cond", "sc_edge", "sc_cell", "dist_edge", "edge_out"})


def _optional(key: str) -> bool:
    """Whether tensor ``key`` belongs to one of the :data:`_OPTIONAL` modules."""
    return not _OPTIONAL.isdisjoint(key.split(".")[:-1])


def load_init_weights(model: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Load a checkpoint's (EMA) weights into ``model`` for fine-tuning.

    Only the condition embeddings (``cond.*``) and the zero-initialised optional branches
    (self-conditioning ``sc_*``, ``model.self_condition``; pair distances ``dist_edge.*``,
    ``model.distance_rbf``; edge updates ``blocks.K.edge_out.*``, ``model.edge_update``) may
    differ: their tensors absent from the checkpoint (new conditions, a branch added) keep
    their fresh (zero-output) initialisation, and
    such checkpoint tensors the model lacks or whose shape changed are skipped. A deeper
    model may also grow from a shallower checkpoint: message-passing blocks (``blocks.K.*``)
    after the checkpoint's last are new, each zeroed to the identity (its ``zero_output_``;
    a block type without one cannot grow), so the grown network computes what the checkpoint
    did until training moves them. Every other tensor must be present with the same shape in
    both.

    Returns:
        ``(missing, skipped)``: parameter names not loaded, and checkpoint names ignored.

    Raises:
        InitMismatchError: (one line) a tensor outside those is missing or differs in
            shape, e.g. a checkpoint of another model size; nothing is loaded.
    """
    state = read_weights(resolve_checkpoint(path))
    own = model.state_dict()
    grown = _grown_blocks(model, state)
    bad = []
    for k in sorted(set(own) | set(state)):
        if _optional(k) or _block_index(k) in grown:
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
    for i in grown:
        model.blocks[i].zero_output_()
    missing = sorted(set(own) - set(usable))
    return missing, skipped


def build_optimizer(cfg: TrainConfig, model: nn.Module, total_steps: int):
    """``(AdamW, warm-up + cosine scheduler)``: weight decay on matrices only. On a GPU the
    fused AdamW: one kernel for all parameters, its step counters on the device (the default
    multi-tensor AdamW reads ~120 host scalars per step). With ``sync_every > 1`` the fused one
    on a CPU too: its ``found_inf`` skips a non-finite step without a host sync."""
    params = list(model.parameters())
    on_cpu = cfg.sync_every > 1 and all(p.device.type == "cpu" for p in params)
    fused = {"fused": True} if params and (all(p.is_cuda for p in params) or on_cpu) else {}
    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=cfg.optim.betas,
        **fused,
    )
    scheduler = warmup_cosine(optimizer, cfg.optim.warmup_steps, total_steps,
                              cfg.optim.min_lr_ratio)
    return optimizer, scheduler

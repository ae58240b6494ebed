"""DDP plumbing for runs under ``torchrun`` (rendezvous settings from the environment)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 writes checkpoints, logs and the progress bar).
        world_size: number of processes.
        local_rank: rank on this node (selects the CUDA device).
        device: the device this process trains on.
        initialized_here: ``True`` when :func:`setup_distributed` created the process group
            (and :func:`teardown_distributed` should destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str | torch.device | None = None) -> DistInfo:
    """Join the process group described by ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK``.

    ``torchrun`` sets those variables plus ``MASTER_ADDR`` / ``MASTER_PORT`` (rendezvous
    ``env://``). Without them (or with ``WORLD_SIZE=1``) this is a single-process run. The
    backend is NCCL on CUDA and gloo on CPU. An already-initialised default group is reused.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if device is None or str(device) == "auto":
        use_cuda = torch.cuda.is_available()
    else:
        use_cuda = torch.device(device).type == "cuda"
    if use_cuda:
        dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, False)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, False)
    backend = "nccl" if use_cuda else "gloo"
    kwargs = {"device_id": dev} if use_cuda else {}
    dist.init_process_group(backend=backend, init_method="env://", **kwargs)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, True)


def teardown_distributed(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``x`` over ranks (identity in a single process)."""
    if not info.distributed:
        return x
    y = x.clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / info.world_size


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's boolean, on every rank."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.broadcast(t, src=0)
    return bool(t.item() > 0.5)


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` (a list of ``world_size`` items) on every rank."""
    if not info.distributed:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


class _TupleOutputs(nn.Module):
    """Inside DDP: return a dataclass output (e.g. ``DenoiserOutput``) as a tuple, so DDP can
    find its tensors (and the parameters a step leaves unused, like the type head in CSP)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.out_type: type | None = None

    def forward(self, *args, **kwargs):
        out = self.module(*args, **kwargs)
        if dataclasses.is_dataclass(out) and not isinstance(out, type):
            self.out_type = type(out)
            return tuple(getattr(out, f.name) for f in dataclasses.fields(out))
        self.out_type = None
        return out


class DistributedModel(nn.Module):
    """``DistributedDataParallel`` around ``module`` that returns what ``module`` returns.

    Args:
        module: the model (on its device).
        info: the process group position (CUDA device ids come from it).
        find_unused: DDP's ``find_unused_parameters`` (needed only when a step leaves
            parameters without a gradient; it costs a graph traversal per step).
        bucket_view: DDP's ``gradient_as_bucket_view`` (gradients live in the all-reduce
            buckets: no per-parameter copies in and out).
    """

    def __init__(self, module: nn.Module, info: DistInfo, find_unused: bool = False,
                 bucket_view: bool = False) -> None:
        super().__init__()
        self.inner = _TupleOutputs(module)
        self.ddp = nn.parallel.DistributedDataParallel(
            self.inner,
            device_ids=[info.device.index] if info.device.type == "cuda" else None,
            find_unused_parameters=find_unused,
            gradient_as_bucket_view=bucket_view,
        )

    def forward(self, *args, **kwargs):
        out = self.ddp(*args, **kwargs)
        if self.inner.out_type is not None:
            return self.inner.out_type(*out)
        return out

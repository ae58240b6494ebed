"""Run-directory checkpoints: safetensors weights + JSON metadata + a training-state file.

Layout of ``RUN_DIR/checkpoints/step_N/`` (``last/`` holds hard links to the newest one)::

    model.safetensors     EMA weights: the sampling checkpoint
    model.json            {"denoiser": DenoiserConfig, "metadata": {config, diffusion, stats,
                          dataset statistics, data sha256, library versions, step, ...}}
                          (``matgen.models.save_checkpoint`` / ``load_checkpoint``)
    training_state.pt     live weights, EMA, optimizer, scheduler, RNG states, data position
                          (tensors and plain Python only: ``torch.load(weights_only=True)``)

Every checkpoint is written into a temporary folder that is renamed into place, so a crash
never leaves a half-written ``step_N`` or ``last``.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from matgen._files import atomic_path

# finding and reading checkpoints is the generation layer's; this module writes them
from matgen.generate import (
    STATE,
    latest_checkpoint,
    read_metadata,
    resolve_checkpoint,
    step_checkpoints,
    weights_file,
    weights_id,
)
from matgen.models import META, WEIGHTS

__all__ = [
    "STATE",
    "checkpoint_damage",
    "latest_checkpoint",
    "library_versions",
    "load_training_state",
    "read_metadata",
    "read_weights",
    "resolve_checkpoint",
    "save_run_checkpoint",
    "step_checkpoints",
    "weights_id",
    "write_weights",
]


def library_versions() -> dict[str, str]:
    out = {}
    for pkg in ("matgen", "torch", "e3nn", "torch_geometric", "pymatgen", "ase", "safetensors"):
        try:
            out[pkg] = md.version(pkg.replace("_", "-"))
        except md.PackageNotFoundError:
            continue
    return out


def _plain_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A contiguous CPU copy of the state dict (safetensors refuses shared storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def write_weights(folder: Path, module: nn.Module, metadata: dict[str, Any]) -> None:
    """Write ``model.safetensors`` + ``model.json`` for ``module`` into ``folder``.

    A denoiser built by ``matgen.models`` goes through ``matgen.models.save_checkpoint`` (so
    ``matgen.models.load_checkpoint`` reads it back); any other module is written with
    safetensors directly in the same two-file layout. Both record the weights' sha256.
    """
    folder.mkdir(parents=True, exist_ok=True)
    saver = _models_saver(module)
    if saver is not None:
        saver(folder, module, metadata)
    else:
        from safetensors.torch import save_file

        from matgen.models._checkpoint import SHA_KEY, file_sha256

        save_file(_plain_state_dict(module), str(folder / WEIGHTS))
        meta = {"denoiser": None, "metadata": metadata,
                SHA_KEY: file_sha256(folder / WEIGHTS)}
        (folder / META).write_text(json.dumps(meta, indent=2, default=str))


def _models_saver(module: nn.Module):
    try:
        from matgen import models
    except ImportError:  # pragma: no cover
        return None
    save = getattr(models, "save_checkpoint", None)
    cls = getattr(models, "DENOISER_CLASSES", None)
    if save is None or cls is None or not isinstance(module, cls):
        return None
    return save


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors`` (``path``: the file or its checkpoint folder),
    verified against the sha256 in ``model.json`` when recorded.

    Raises:
        FileNotFoundError: no weights file.
        matgen.models.CheckpointError: a damaged file (one line naming it).
    """
    from matgen.models import read_checked_weights

    path = weights_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {WEIGHTS} at {path}")
    return read_checked_weights(path)


def save_run_checkpoint(
    ckpt_root: Path,
    step: int,
    ema_module: nn.Module,
    metadata: dict[str, Any],
    state: dict[str, Any],
    keep: int | None = None,
) -> Path:
    """Atomically write ``ckpt_root/step_{step}`` and point ``ckpt_root/last`` at it.

    Returns:
        The ``step_{step}`` folder.
    """
    final = ckpt_root / f"step_{step}"
    with atomic_path(final) as tmp:
        write_weights(tmp, ema_module, metadata)
        torch.save(state, tmp / STATE)
    _update_last(ckpt_root, final)
    if keep is not None:
        _prune(ckpt_root, keep, protect=final)
    return final


def _update_last(ckpt_root: Path, target: Path) -> None:
    """``ckpt_root/last``: hard links to ``target``'s files (copies where links fail)."""
    with atomic_path(ckpt_root / "last") as tmp:
        tmp.mkdir()
        for f in target.iterdir():
            try:
                os.link(f, tmp / f.name)
            except OSError:
                shutil.copy2(f, tmp / f.name)


def _prune(ckpt_root: Path, keep: int, protect: Path) -> None:
    ckpts = step_checkpoints(ckpt_root)
    for _, p in ckpts[: max(0, len(ckpts) - keep)]:
        if p != protect:
            shutil.rmtree(p, ignore_errors=True)


def checkpoint_damage(folder: Path) -> str | None:
    """Why a run checkpoint cannot be resumed from (one line naming the file), or None.

    Checks every member of ``training_state.pt`` (a zip archive) against its CRC, and the
    weights against ``model.json`` (sha256, header, finite values); nothing is unpickled.
    """
    from matgen.models import CheckpointError, read_checked_weights, read_checkpoint_json

    try:
        read_checkpoint_json(folder / META)
    except CheckpointError as exc:
        return str(exc)
    state = folder / STATE
    try:
        with zipfile.ZipFile(state) as zf:
            bad = zf.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        return f"{state}: unreadable ({str(exc).splitlines()[0][:120] if str(exc) else exc!r})"
    if bad is not None:
        return f"{state}: damaged ({bad} fails its CRC check)"
    try:
        read_checked_weights(folder / WEIGHTS)
    except CheckpointError as exc:
        return str(exc)
    return None


def load_training_state(folder: Path, map_location: str | torch.device = "cpu") -> dict:
    """The training state of a run checkpoint (``torch.load(weights_only=True)``).

    Raises:
        matgen.models.CheckpointError: the file cannot be read (one line naming it).
    """
    import pickle

    from matgen.models import CheckpointError

    path = folder / STATE
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable training state "
                              f"({str(exc).splitlines()[0][:160] if str(exc) else exc!r})"
                              ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a training state (a {type(state).__name__})")
    return state

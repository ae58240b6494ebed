"""Checkpoints: ``model.safetensors`` (weights) + ``model.json`` (configs, stats, metadata)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from matgen.diffusion import DatasetStats, DiffusionConfig
from matgen.models._denoiser import CrystalDenoiser, DenoiserConfig, build_denoiser

WEIGHTS = "model.safetensors"
META = "model.json"


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def save_checkpoint(
    directory: str | Path, model: CrystalDenoiser, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory``.

    ``model.json`` holds ``{"denoiser": DenoiserConfig, "metadata": metadata}``; to let
    ``matgen sample`` rebuild everything from the checkpoint alone put the
    :class:`~matgen.diffusion.DiffusionConfig` under ``metadata["diffusion"]`` and the
    :class:`~matgen.diffusion.DatasetStats` under ``metadata["stats"]`` (pydantic models or
    their dicts); :func:`load_checkpoint` validates them back.

    Args:
        directory: output folder (created).
        model: the denoiser (an EMA copy or the raw model; DDP/compile wrappers are unwrapped).
        metadata: JSON-serialisable extras (pydantic models are dumped).

    Returns:
        The path of the written ``model.safetensors``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = directory / WEIGHTS
    tmp = directory / (WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(weights)
    meta = {"denoiser": model.cfg.model_dump(mode="json"), "metadata": _jsonable(metadata or {})}
    tmpj = directory / (META + ".tmp")
    tmpj.write_text(json.dumps(meta, indent=2, sort_keys=True))
    tmpj.replace(directory / META)
    return weights


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[CrystalDenoiser, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the checkpoint folder or its ``model.safetensors`` file.
        device: where to put the model.

    Returns:
        ``(model, metadata)``; the model is in eval mode. Where present, ``metadata["diffusion"]``
        is a :class:`DiffusionConfig` and ``metadata["stats"]`` a :class:`DatasetStats`.

    Raises:
        FileNotFoundError: if the weights or the JSON are missing.
    """
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    weights = path if path.is_file() else directory / WEIGHTS
    meta_path = directory / META
    if not weights.exists() or not meta_path.exists():
        raise FileNotFoundError(f"{path}: expected {WEIGHTS} and {META}")
    meta = json.loads(meta_path.read_text())
    model = build_denoiser(DenoiserConfig.model_validate(meta["denoiser"]))
    model.load_state_dict(load_file(str(weights), device="cpu"))
    model.to(device).eval()
    md = dict(meta.get("metadata", {}))
    if isinstance(md.get("diffusion"), dict):
        md["diffusion"] = DiffusionConfig.model_validate(md["diffusion"])
    if isinstance(md.get("stats"), dict):
        md["stats"] = DatasetStats.model_validate(md["stats"])
    return model, md


def load_pretrained_weights(model: CrystalDenoiser, path: str | Path) -> list[str]:
    """Copy matching weights from a checkpoint into ``model`` (fine-tuning with new adapters).

    Parameters that exist only in ``model`` (e.g. the embedding of a newly added condition,
    zero-initialised) keep their initial values.

    Returns:
        Names of the parameters of ``model`` that were not in the checkpoint.
    """
    path = Path(path)
    weights = path if path.is_file() else path / WEIGHTS
    state = load_file(str(weights), device="cpu")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(k for k in own if k not in usable)

"""Checkpoints: ``model.safetensors`` (weights) + ``model.json`` (configs, stats, metadata).

``model.json`` records the sha256 of the weights file (``weights_sha256``); loading verifies it
(checkpoints written before it was recorded still load) and every other property of the pair
that can be checked before the model runs: readable JSON with a valid denoiser config, a
readable safetensors file, finite tensors of exactly the shapes the config builds. Anything
wrong is a :class:`CheckpointError` whose one-line message names the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from matgen.diffusion import DatasetStats, DiffusionConfig
from matgen.models._denoiser import CrystalDenoiser, DenoiserConfig, build_denoiser

WEIGHTS = "model.safetensors"
META = "model.json"
SHA_KEY = "weights_sha256"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line naming the file.

    Not a ``ValueError``: a damaged file is bad data (exit 1 in the CLI), not a usage error.
    """


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for blk in iter(lambda: fh.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _pydantic_line(exc: ValidationError) -> str:
    errs = exc.errors()
    where = ".".join(str(x) for x in errs[0]["loc"]) or "(root)"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{where}: {errs[0]['msg']}{more}"


def read_checkpoint_json(path: str | Path) -> dict[str, Any]:
    """The whole ``model.json`` (``path``: the file or its folder), checked to be a JSON
    object whose ``metadata`` (when present) is an object.

    Raises:
        CheckpointError: missing, unreadable, not JSON, or not of that shape.
    """
    path = Path(path)
    if path.is_dir():
        path = path / META
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found (a checkpoint folder holds {WEIGHTS} and "
                              f"{META})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({_first_line(exc)})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a JSON object with 'denoiser' and 'metadata', "
                              f"found a {type(raw).__name__}")
    if not isinstance(raw.get("metadata", {}), dict):
        raise CheckpointError(f"{path}: 'metadata' must be a JSON object")
    sha = raw.get(SHA_KEY)
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
        raise CheckpointError(f"{path}: '{SHA_KEY}' is not a sha256 hex digest")
    return raw


def read_checked_weights(weights: str | Path, meta: dict[str, Any] | None = None
                         ) -> dict[str, torch.Tensor]:
    """The tensors of a ``model.safetensors``, verified: the sha256 recorded in ``meta`` (the
    checkpoint's ``model.json``; read from beside the file when None), a readable header and
    data, finite floating-point values.

    Raises:
        CheckpointError: one line naming the file and what is wrong.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: not found")
    if meta is None and (weights.parent / META).is_file():
        meta = read_checkpoint_json(weights.parent / META)
    expected = (meta or {}).get(SHA_KEY)
    if expected is not None:
        got = file_sha256(weights)
        if got != expected:
            raise CheckpointError(
                f"{weights}: sha256 {got[:12]} differs from the {expected[:12]} recorded in "
                f"{META} (the file was changed or damaged after it was written)")
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{weights}: not a readable safetensors file "
                              f"({_first_line(exc)})") from None
    if not state:
        raise CheckpointError(f"{weights}: holds no tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise CheckpointError(f"{weights}: {len(bad)} tensor(s) hold NaN or inf values "
                              f"(first: {bad[0]})")
    return state


def _shape_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    out = [f"{k} missing" for k in own if k not in state]
    out += [f"{k} unexpected" for k in state if k not in own]
    out += [f"{k} is {tuple(state[k].shape)}, the config builds {tuple(own[k].shape)}"
            for k in own if k in state and own[k].shape != state[k].shape]
    return out


def verify_checkpoint(path: str | Path) -> None:
    """Check a checkpoint the way :func:`load_checkpoint` does (on CPU), keeping nothing.

    Raises:
        FileNotFoundError: the weights or the JSON are missing.
        CheckpointError: anything else wrong (one line naming the file).
    """
    load_checkpoint(path, device="cpu")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def save_checkpoint(
    directory: str | Path, model: CrystalDenoiser, metadata: dict[str, Any] | None = None,
    storage_dtype: torch.dtype | None = None,
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
        storage_dtype: store floating-point tensors in this dtype (e.g. ``torch.float16`` halves
            a checkpoint that is committed or carried to a GPU machine); loading casts them back
            to the model's dtype. Recorded as ``storage_dtype`` in ``model.json``.

    Returns:
        The path of the written ``model.safetensors``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if storage_dtype is not None:
        state = {k: v.to(storage_dtype) if v.is_floating_point() else v for k, v in state.items()}
    weights = directory / WEIGHTS
    tmp = directory / (WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    sha = file_sha256(tmp)
    tmp.replace(weights)
    meta = {"denoiser": model.cfg.model_dump(mode="json"), "metadata": _jsonable(metadata or {}),
            SHA_KEY: sha}
    if storage_dtype is not None:
        meta["storage_dtype"] = str(storage_dtype).removeprefix("torch.")
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
        CheckpointError: a damaged or inconsistent checkpoint (weights that do not match the
            recorded sha256, an unreadable file, an invalid config, NaN weights, tensors of
            other shapes than the config builds); one line naming the file.
    """
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    weights = path if path.is_file() else directory / WEIGHTS
    meta_path = directory / META
    if not weights.exists() or not meta_path.exists():
        raise FileNotFoundError(f"{path}: expected {WEIGHTS} and {META}")
    meta = read_checkpoint_json(meta_path)
    den = meta.get("denoiser")
    if not isinstance(den, dict):
        raise CheckpointError(f"{meta_path}: no 'denoiser' config object (found "
                              f"{type(den).__name__ if den is not None else 'none'})")
    try:
        model = build_denoiser(DenoiserConfig.model_validate(den))
    except ValidationError as exc:
        raise CheckpointError(f"{meta_path}: invalid denoiser config: "
                              f"{_pydantic_line(exc)}") from None
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{meta_path}: the denoiser config does not build a model "
                              f"({_first_line(exc)})") from None
    state = read_checked_weights(weights, meta)
    diff = _shape_mismatch(model.state_dict(), state)
    if diff:
        raise CheckpointError(f"{weights}: the weights do not fit the denoiser config in {META} "
                              f"({len(diff)} tensors differ; first: {diff[0]})")
    model.load_state_dict(state)
    model.to(device).eval()
    md = dict(meta.get("metadata", {}))
    for key, cls in (("diffusion", DiffusionConfig), ("stats", DatasetStats)):
        if md.get(key) is None:
            continue
        if not isinstance(md[key], dict):
            raise CheckpointError(f"{meta_path}: metadata.{key} must be a JSON object")
        try:
            md[key] = cls.model_validate(md[key])
        except ValidationError as exc:
            raise CheckpointError(f"{meta_path}: invalid metadata.{key}: "
                                  f"{_pydantic_line(exc)}") from None
    return model, md


def load_pretrained_weights(model: CrystalDenoiser, path: str | Path) -> list[str]:
    """Copy matching weights from a checkpoint into ``model`` (fine-tuning with new adapters).

    Parameters that exist only in ``model`` (e.g. the embedding of a newly added condition,
    zero-initialised) keep their initial values.

    Returns:
        Names of the parameters of ``model`` that were not in the checkpoint.

    Raises:
        CheckpointError: damaged weights (see :func:`read_checked_weights`).
    """
    path = Path(path)
    weights = path if path.is_file() else path / WEIGHTS
    state = read_checked_weights(weights)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(k for k in own if k not in usable)

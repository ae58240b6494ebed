"""Finding and loading a sampling checkpoint: the shipped default model, checkpoint folders and
run directories (the layout ``matgen train`` writes), and the diffusion a checkpoint names.

A checkpoint folder holds ``model.safetensors`` (the EMA weights) and ``model.json``
(``{"denoiser": DenoiserConfig, "metadata": {...}}``); a run directory holds
``checkpoints/step_N/`` (complete when ``training_state.pt`` is there too) and ``last/``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from matgen.models import META, WEIGHTS

#: The model ``matgen sample`` and :func:`matgen.sample` use without a checkpoint.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "default"

STATE = "training_state.pt"
_STEP_RE = re.compile(r"^step_(\d+)$")


def read_metadata(folder: str | Path) -> dict[str, Any]:
    """The ``metadata`` part of a checkpoint's ``model.json`` (config, stats, step, ...).

    Raises:
        matgen.models.CheckpointError: ``model.json`` is missing, not JSON or not an object.
    """
    from matgen.models import read_checkpoint_json

    folder = Path(folder)
    p = folder / META if folder.is_dir() else folder.with_name(META)
    return dict(read_checkpoint_json(p).get("metadata", {}))


def weights_file(path: str | Path) -> Path:
    """``model.safetensors`` of a checkpoint (``path``: the file or its folder)."""
    path = Path(path)
    return path / WEIGHTS if path.is_dir() else path


def weights_id(path: str | Path, length: int = 12) -> str:
    """Short sha256 of a checkpoint's weights file (the checkpoint id in sample output)."""
    h = hashlib.sha256()
    with open(weights_file(path), "rb") as fh:
        for blk in iter(lambda: fh.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()[:length]


def step_checkpoints(ckpt_root: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of the complete ``step_N`` checkpoints, oldest first."""
    if not ckpt_root.is_dir():
        return []
    out = []
    for p in ckpt_root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and (p / STATE).is_file() and (p / WEIGHTS).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """``last/`` when complete, else the newest complete ``step_N/`` (``None`` if none)."""
    last = ckpt_root / "last"
    ckpts = step_checkpoints(ckpt_root)
    if (last / STATE).is_file() and (last / WEIGHTS).is_file():
        if not ckpts:
            return last
        state_step = int(read_metadata(last).get("step", -1))
        if state_step >= ckpts[-1][0]:
            return last
    return ckpts[-1][1] if ckpts else None


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a checkpoint folder, its ``model.safetensors``, or a run dir (-> its latest)."""
    p = Path(path)
    if p.is_file():
        return p.parent
    if (p / WEIGHTS).is_file():
        return p
    if (p / "checkpoints").is_dir():
        found = latest_checkpoint(p / "checkpoints")
        if found is not None:
            return found
    raise FileNotFoundError(f"no checkpoint ({WEIGHTS}) found at {p}")


_DIFFUSIONS: dict[str, Any] = {}


def cached_diffusion(cfg: Any, stats: Any) -> Any:
    """``matgen.diffusion.build_diffusion(cfg, stats)``, reused while ``(cfg, stats)`` repeat
    (building precomputes tables; campaigns and tests build the same one many times)."""
    from matgen.diffusion import build_diffusion

    key = json.dumps([cfg.model_dump(mode="json"), stats.model_dump(mode="json")],
                     sort_keys=True)
    diffusion = _DIFFUSIONS.get(key)
    if diffusion is None:
        diffusion = build_diffusion(cfg, stats)
        _DIFFUSIONS.clear()
        _DIFFUSIONS[key] = diffusion
    return diffusion


def load_for_sampling(checkpoint: str | Path | None, device):
    """``(denoiser, diffusion, metadata, checkpoint_dir)`` from a checkpoint folder/file/run
    (``None``: the shipped default model) on ``device``."""
    from matgen.models import load_checkpoint

    if checkpoint is None:
        if not (DEFAULT_MODEL_DIR / WEIGHTS).is_file():
            raise FileNotFoundError(
                f"no default model at {DEFAULT_MODEL_DIR}: pass --checkpoint "
                "(a checkpoint folder, e.g. RUN_DIR/checkpoints/last, made by `matgen train`)"
            )
        checkpoint = DEFAULT_MODEL_DIR
    ckpt = resolve_checkpoint(checkpoint)
    model, meta = load_checkpoint(ckpt, device=device)
    if meta.get("diffusion") is None or meta.get("stats") is None:
        raise ValueError(f"{ckpt}: checkpoint metadata lacks the diffusion config or stats")
    diffusion = cached_diffusion(meta["diffusion"], meta["stats"])
    return model, diffusion, meta, ckpt

"""matgen.models: the equivariant crystal denoiser and its checkpoints.

Public API:
    DenoiserConfig, CrystalDenoiser, build_denoiser: the network.
    DenoiserOutput, ConditionSpec: re-exported from :mod:`matgen.nn`.
    save_checkpoint, load_checkpoint, load_pretrained_weights: safetensors + JSON checkpoints.
"""

from __future__ import annotations

from matgen.models._checkpoint import load_checkpoint, load_pretrained_weights, save_checkpoint
from matgen.models._denoiser import CrystalDenoiser, DenoiserConfig, build_denoiser
from matgen.nn import ConditionSpec, DenoiserOutput

__all__ = [
    "ConditionSpec",
    "CrystalDenoiser",
    "DenoiserConfig",
    "DenoiserOutput",
    "build_denoiser",
    "load_checkpoint",
    "load_pretrained_weights",
    "save_checkpoint",
]

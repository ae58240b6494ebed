"""matgen.models: the equivariant crystal denoiser and its checkpoints.

Public API:
    DenoiserConfig, build_denoiser: the network (``arch`` picks the class).
    CrystalDenoiser: the radius-graph, basis-invariant denoiser (``arch: radius``).
    DenseDenoiser: the all-pairs Fourier-feature denoiser (``arch: dense``).
    DENOISER_CLASSES: the denoiser classes (for isinstance checks).
    DenoiserOutput, ConditionSpec: re-exported from :mod:`matgen.nn`.
    save_checkpoint, load_checkpoint, load_pretrained_weights: safetensors + JSON checkpoints.
"""

from __future__ import annotations

from matgen.models._checkpoint import load_checkpoint, load_pretrained_weights, save_checkpoint
from matgen.models._dense import DenseDenoiser
from matgen.models._denoiser import CrystalDenoiser, DenoiserConfig, build_denoiser
from matgen.nn import ConditionSpec, DenoiserOutput

DENOISER_CLASSES = (CrystalDenoiser, DenseDenoiser)

__all__ = [
    "DENOISER_CLASSES",
    "DenseDenoiser",
    "ConditionSpec",
    "CrystalDenoiser",
    "DenoiserConfig",
    "DenoiserOutput",
    "build_denoiser",
    "load_checkpoint",
    "load_pretrained_weights",
    "save_checkpoint",
]

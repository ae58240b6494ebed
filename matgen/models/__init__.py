"""matgen.models: the equivariant crystal denoiser and its checkpoints.

Public API:
    DenoiserConfig, build_denoiser: the network (``arch`` picks the class).
    CrystalDenoiser: the radius-graph, basis-invariant denoiser (``arch: radius``).
    DenseDenoiser: the all-pairs Fourier-feature denoiser (``arch: dense``).
    DENOISER_CLASSES: the denoiser classes (for isinstance checks).
    DenoiserOutput, ConditionSpec: re-exported from :mod:`matgen.nn`.
    save_checkpoint, load_checkpoint, load_pretrained_weights: safetensors + JSON checkpoints;
        verify_checkpoint, read_checkpoint_json, read_checked_weights, CheckpointError (a
        damaged checkpoint, one line naming the file); WEIGHTS, META: the checkpoint's file
        names (``model.safetensors``, ``model.json``).
    CompositionModel, CompositionEnsemble, CompositionConfig, encode: the autoregressive
        composition model (one network, or several averaged) that
        composition-first de novo generation draws cells' atoms from; save_composition_model,
        load_composition_model, has_composition_model, CompositionFileError: its files
        (``composition.safetensors`` + ``composition.json`` beside a denoiser's).
"""

from __future__ import annotations

from matgen.models._checkpoint import (
    META,
    WEIGHTS,
    CheckpointError,
    load_checkpoint,
    load_pretrained_weights,
    read_checked_weights,
    read_checkpoint_json,
    save_checkpoint,
    verify_checkpoint,
)
from matgen.models._composition import (
    COMPOSITION_META,
    COMPOSITION_WEIGHTS,
    CompositionConfig,
    CompositionEnsemble,
    CompositionFileError,
    CompositionModel,
    encode,
    has_composition_model,
    load_composition_model,
    save_composition_model,
)
from matgen.models._denoiser import CrystalDenoiser, DenoiserConfig, build_denoiser
from matgen.models._dense import DenseDenoiser
from matgen.nn import ConditionSpec, DenoiserOutput

DENOISER_CLASSES = (CrystalDenoiser, DenseDenoiser)

__all__ = [
    "COMPOSITION_META",
    "COMPOSITION_WEIGHTS",
    "DENOISER_CLASSES",
    "META",
    "WEIGHTS",
    "CheckpointError",
    "CompositionConfig",
    "CompositionEnsemble",
    "CompositionFileError",
    "CompositionModel",
    "ConditionSpec",
    "CrystalDenoiser",
    "DenoiserConfig",
    "DenoiserOutput",
    "DenseDenoiser",
    "build_denoiser",
    "encode",
    "has_composition_model",
    "load_checkpoint",
    "load_composition_model",
    "load_pretrained_weights",
    "read_checked_weights",
    "read_checkpoint_json",
    "save_checkpoint",
    "save_composition_model",
    "verify_checkpoint",
]

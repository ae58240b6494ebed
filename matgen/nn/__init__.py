"""matgen.nn: periodic graphs and equivariant layers (e3nn spherical harmonics, pure-torch scatter).

Public API:
    periodic_radius_graph, PeriodicGraph: complete cutoff graph over periodic images, batched.
    DenoiserOutput: what a crystal denoiser returns (shared by diffusion, models, guidance).
    ConditionSpec: one conditioning property.
    RadialBasis, SinusoidalEmbedding, ConditionEmbedding, AngularDescriptor, EquivariantBlock,
    scatter_sum, scatter_mean, mlp: building blocks.
"""

from __future__ import annotations

from matgen.nn._graph import PeriodicGraph, periodic_radius_graph
from matgen.nn._layers import (
    AngularDescriptor,
    ConditionEmbedding,
    EquivariantBlock,
    RadialBasis,
    SinusoidalEmbedding,
    mlp,
    scatter_mean,
    scatter_sum,
)
from matgen.nn._types import ConditionSpec, DenoiserOutput

__all__ = [
    "AngularDescriptor",
    "ConditionEmbedding",
    "ConditionSpec",
    "DenoiserOutput",
    "EquivariantBlock",
    "PeriodicGraph",
    "RadialBasis",
    "SinusoidalEmbedding",
    "mlp",
    "periodic_radius_graph",
    "scatter_mean",
    "scatter_sum",
]

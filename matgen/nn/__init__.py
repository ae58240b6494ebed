"""matgen.nn: periodic graphs and equivariant layers (e3nn spherical harmonics, pure-torch scatter).

Public API:
    periodic_radius_graph, PeriodicGraph: complete cutoff graph over periodic images, batched.
    DenoiserOutput: what a crystal denoiser returns (shared by diffusion, models, guidance).
    CleanEstimate: a denoiser's previous estimate of the clean crystals (self-conditioning).
    ConditionSpec: one conditioning property.
    RadialBasis, SinusoidalEmbedding, ConditionEmbedding, AngularDescriptor, EquivariantBlock,
    scatter_sum, scatter_mean, mlp: building blocks; atom_slots, to_dense: per-atom rows into
        a padded (B, M, ...) layout.
    CountedModule: a module with ``num_parameters`` (the denoisers' base).
    det3, inv3, cofactor_rows, polar_rotation: closed-form 3x3 algebra (no GPU syncs).
"""

from __future__ import annotations

from matgen.nn._graph import PeriodicGraph, periodic_radius_graph
from matgen.nn._layers import (
    AngularDescriptor,
    ConditionEmbedding,
    CountedModule,
    EquivariantBlock,
    RadialBasis,
    SinusoidalEmbedding,
    atom_slots,
    mlp,
    scatter_mean,
    scatter_sum,
    to_dense,
)
from matgen.nn._linalg import cofactor_rows, det3, inv3, polar_rotation
from matgen.nn._types import CleanEstimate, ConditionSpec, DenoiserOutput

__all__ = [
    "AngularDescriptor",
    "CleanEstimate",
    "ConditionEmbedding",
    "ConditionSpec",
    "CountedModule",
    "DenoiserOutput",
    "EquivariantBlock",
    "PeriodicGraph",
    "RadialBasis",
    "SinusoidalEmbedding",
    "atom_slots",
    "cofactor_rows",
    "det3",
    "inv3",
    "mlp",
    "periodic_radius_graph",
    "polar_rotation",
    "scatter_mean",
    "scatter_sum",
    "to_dense",
]

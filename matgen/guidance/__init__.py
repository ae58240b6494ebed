"""matgen.guidance: wrappers that take a denoiser and return a denoiser; constraints.

Public API:
    classifier_free_guidance, GuidedDenoiser: classifier-free guidance with scale G.
    TypeMaskedDenoiser: hard type constraint on any denoiser.
    chemsys_type_mask, parse_chemsys: chemical system -> ``(K,)`` bool type mask.
"""

from __future__ import annotations

from matgen.guidance._chemsys import chemsys_type_mask, parse_chemsys
from matgen.guidance._wrappers import GuidedDenoiser, TypeMaskedDenoiser, classifier_free_guidance

__all__ = [
    "GuidedDenoiser",
    "TypeMaskedDenoiser",
    "chemsys_type_mask",
    "classifier_free_guidance",
    "parse_chemsys",
]

"""matgen.evaluation: CSP and de novo metrics as the literature computes them, S.U.N., hit rate.

CSP: :func:`evaluate_csp` (match rate / RMSE, CDVAE/DiffCSP definitions, best-of-k).
De novo: :func:`evaluate_generation` (validity, COV-R/COV-P, Wasserstein distances, uniqueness,
novelty). Stability: :func:`evaluate_sun` (MLIP-judged S.U.N.). Conditioning: :func:`hit_rate`.
"""

from __future__ import annotations

from matgen.evaluation._csp import CSPResult, MatcherConfig, csp_match_rate, evaluate_csp, rms_dist
from matgen.evaluation._io import (
    EvaluationInputError,
    GeneratedSet,
    ReferenceSet,
    generated_from_structures,
    read_generated,
    read_reference_csv,
    reference_from_structures,
)
from matgen.evaluation._validity import (
    CrystalValidity,
    build_structure,
    check_validity,
    smact_validity,
    structure_validity,
)

__all__ = [
    "CSPResult",
    "CrystalValidity",
    "EvaluationInputError",
    "GeneratedSet",
    "MatcherConfig",
    "ReferenceSet",
    "build_structure",
    "check_validity",
    "csp_match_rate",
    "evaluate_csp",
    "generated_from_structures",
    "read_generated",
    "read_reference_csv",
    "reference_from_structures",
    "rms_dist",
    "smact_validity",
    "structure_validity",
]

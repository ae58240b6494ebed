"""matgen.evaluation: CSP and de novo metrics as the literature computes them, S.U.N., hit rate.

CSP: :func:`evaluate_csp` (match rate and RMSE with CDVAE/DiffCSP definitions, best-of-k).
De novo: :func:`evaluate_generation` (validity, COV-R/COV-P, Wasserstein distances, uniqueness,
novelty). Stability: :func:`evaluate_sun` (MLIP-judged S.U.N.; :func:`mlip_scorer`).
Conditioning: :func:`hit_rate`, :func:`hit_rate_from_predictor`, :func:`compare_to_base_rate`.
Validity rules: :func:`smact_validity`, :func:`structure_validity`.
Inputs: :func:`read_generated` (extxyz frames, paired by ``material_id``),
:func:`read_reference_csv` (CDVAE CSV).
"""

from __future__ import annotations

from matgen.evaluation._csp import CSPResult, MatcherConfig, csp_match_rate, evaluate_csp, rms_dist
from matgen.evaluation._gen import (
    COV_CUTOFFS,
    GenConfig,
    GenResult,
    cov_cutoffs,
    coverage,
    evaluate_generation,
    guess_dataset,
    wasserstein,
)
from matgen.evaluation._hitrate import (
    HitRate,
    compare_to_base_rate,
    hit_rate,
    hit_rate_from_predictor,
)
from matgen.evaluation._io import (
    EvaluationInputError,
    GeneratedSet,
    ReferenceSet,
    generated_from_structures,
    read_generated,
    read_reference_csv,
    reference_from_structures,
)
from matgen.evaluation._sun import (
    STABILITY_NOTE,
    Scorer,
    SUNResult,
    evaluate_sun,
    mlip_scorer,
    relaxation_rmsd,
)
from matgen.evaluation._validity import (
    SMACT_RULES,
    CrystalValidity,
    build_structure,
    check_validity,
    smact_validity,
    structure_validity,
)

__all__ = [
    "COV_CUTOFFS",
    "SMACT_RULES",
    "STABILITY_NOTE",
    "CSPResult",
    "CrystalValidity",
    "EvaluationInputError",
    "GenConfig",
    "GenResult",
    "GeneratedSet",
    "HitRate",
    "MatcherConfig",
    "ReferenceSet",
    "SUNResult",
    "Scorer",
    "build_structure",
    "check_validity",
    "compare_to_base_rate",
    "cov_cutoffs",
    "coverage",
    "csp_match_rate",
    "evaluate_csp",
    "evaluate_generation",
    "evaluate_sun",
    "generated_from_structures",
    "guess_dataset",
    "hit_rate",
    "hit_rate_from_predictor",
    "mlip_scorer",
    "read_generated",
    "read_reference_csv",
    "reference_from_structures",
    "relaxation_rmsd",
    "rms_dist",
    "smact_validity",
    "structure_validity",
    "wasserstein",
]

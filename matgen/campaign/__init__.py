"""matgen.campaign: closed-loop discovery campaigns without an orchestrator.

A :class:`Campaign` runs rounds of generate -> dedup -> score -> select (BoTorch, via
:mod:`matgen.acquisition`) -> submit -> label (an :class:`Oracle`) -> update (active learning)
-> report, each step idempotent and committed atomically in a :class:`CampaignStore`
(SQLAlchemy; SQLite by default, PostgreSQL URLs work). :func:`export_campaign` writes the lab
hand-off. Prefect orchestration lives in ``flows/``.
"""

from __future__ import annotations

from matgen.campaign._checks import CampaignConfigError, ConfigChangedError, check_config
from matgen.campaign._components import (
    CandidateGenerator,
    DatasetGenerator,
    DatasetScorer,
    MissingModelError,
    ModelGenerator,
    Scorer,
    SurrogateScorer,
)
from matgen.campaign._config import (
    DEFAULT_MODEL_DIR,
    AcquisitionConfig,
    CampaignConfig,
    ConfigError,
    GeneratorConfig,
    GuardConfig,
    ObjectiveConfig,
    OracleConfig,
    ScorerConfig,
    TaskRunnerConfig,
    config_changes,
    load_config,
)
from matgen.campaign._engine import (
    ROUND_PLAN,
    Campaign,
    ChunkRunner,
    ImportReport,
    RoundStep,
    build_generator,
    build_oracle,
    build_scorer,
)
from matgen.campaign._export import export_campaign
from matgen.campaign._metrics import round_metrics
from matgen.campaign._oracles import DatasetOracle, DFTOracle, LabOracle, MLIPOracle, Oracle
from matgen.campaign._results import ResultsFileError, read_results
from matgen.campaign._store import STEPS, CampaignStore, CandidateRow, StepConflict, StoreError

__all__ = [
    "DEFAULT_MODEL_DIR",
    "ROUND_PLAN",
    "STEPS",
    "AcquisitionConfig",
    "Campaign",
    "CampaignConfig",
    "CampaignConfigError",
    "CampaignStore",
    "CandidateGenerator",
    "CandidateRow",
    "ChunkRunner",
    "ConfigChangedError",
    "ConfigError",
    "DFTOracle",
    "DatasetGenerator",
    "DatasetOracle",
    "DatasetScorer",
    "GeneratorConfig",
    "GuardConfig",
    "ImportReport",
    "LabOracle",
    "MLIPOracle",
    "MissingModelError",
    "ModelGenerator",
    "ObjectiveConfig",
    "Oracle",
    "OracleConfig",
    "ResultsFileError",
    "RoundStep",
    "Scorer",
    "ScorerConfig",
    "StepConflict",
    "StoreError",
    "SurrogateScorer",
    "TaskRunnerConfig",
    "build_generator",
    "build_oracle",
    "build_scorer",
    "check_config",
    "config_changes",
    "export_campaign",
    "load_config",
    "read_results",
    "round_metrics",
]

"""Campaign configuration: pydantic models loaded from YAML."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Where the shipped default generator checkpoint lives (inside the package).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "default"


class ConfigError(ValueError):
    """A campaign YAML that cannot be read (one line naming the file and the problem)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ObjectiveConfig(_Frozen):
    """One target: a goal (maximise / minimise) and/or a window ``[minimum, maximum]``.

    ``property`` names a scorer output / oracle label (``band_gap``, ``e_above_hull``,
    ``formation_energy_per_atom``, ...); ``scale`` is its typical variation (eV, eV/atom, ...).
    """

    property: str
    goal: Literal["maximize", "minimize"] | None = None
    minimum: float | None = None
    maximum: float | None = None
    scale: float = 1.0

    @model_validator(mode="after")
    def _check(self) -> ObjectiveConfig:
        if self.goal is None and self.minimum is None and self.maximum is None:
            raise ValueError(f"objective {self.property!r} needs a goal, a minimum or a maximum")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"objective {self.property!r}: minimum > maximum")
        return self

    def condition_value(self) -> float | None:
        """The value the conditional generator is steered to (window centre or bound)."""
        if self.minimum is not None and self.maximum is not None:
            return 0.5 * (self.minimum + self.maximum)
        if self.maximum is not None:
            return self.maximum
        return self.minimum


class FinetuneConfig(_Frozen):
    """The generator learns from the labels (:mod:`matgen.campaign._finetune`).

    Before round ``k * every`` (k >= 1) the generator is fine-tuned (``matgen.training.train``
    with ``init`` = the current version) for ``steps`` steps on the oracle hits so far, their
    labels attached as conditions, plus rows of its training data (``replay_csv``, default
    ``$MATGEN_DATA_DIR/mp20_reduced/train.csv``) making up the ``replay`` share of the set, so
    it does not forget. Each version is written atomically and recorded in the store before
    the round that uses it generates. Diversity guard: when the distinct reduced-formula share
    of the newest pool a fine-tuned version generated falls below ``min_distinct_share``, the
    campaign goes back to the version before it and stops fine-tuning (reported per round).

    ``replay_fill``: by default the set is the hits plus ``ceil(hits * replay / (1 - replay))``
    replayed rows, so a few hits make a small set that ``steps`` steps pass over many times.
    With ``replay_fill: true`` the set has ``steps * batch_size`` rows (about one pass): the
    hits, repeated as evenly as possible (each at least once), fill the ``1 - replay`` share
    and the rest are distinct replayed rows (at most the replay CSV's length).

    ``rows``: ``hits`` (default) trains on the oracle hits only; ``labelled`` on every
    oracle-labelled candidate, hit or not, each with its own labels as conditions, so the
    model learns how the campaign's chemistry maps to the conditions rather than the hit set
    alone (``min_hits`` still counts hits).

    ``skip_suspects``: leave out candidates whose oracle label (else the scorer's value) puts
    them more than 0.05 eV/atom below the known hull: the oracle MLIP's optimism is not taught
    to the generator (``min_hits`` counts the hits that remain).
    """

    every: int = Field(2, ge=1)
    steps: int = Field(20, ge=1)
    replay: float = Field(0.5, ge=0.0, lt=1.0)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-4, gt=0)
    min_hits: int = Field(1, ge=1)
    min_distinct_share: float = Field(0.5, ge=0.0, le=1.0)
    replay_csv: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    replay_fill: bool = Field(False, description="fill the set to steps * batch_size rows: "
                              "repeated hits (1 - replay share) + distinct replayed rows")
    rows: Literal["hits", "labelled"] = Field(
        "hits", description="train on the oracle hits, or on every labelled candidate with "
        "its labels as conditions")
    skip_suspects: bool = Field(False, description="leave out candidates more than 0.05 eV/atom "
                                "below the known hull (the oracle MLIP's optimism)")


class GeneratorConfig(_Frozen):
    """How candidates are generated each round.

    ``kind: model`` samples the diffusion model at ``checkpoint`` (default: the shipped model);
    ``kind: dataset`` draws candidates from a CDVAE-style CSV (``pool_csv``), the simulated
    setting of benchmarks and tests. ``conditioned: false`` samples without conditions (the
    objectives' windows are not passed to the model); ``finetune`` lets the generator learn
    from the labels (:class:`FinetuneConfig`).
    """

    kind: Literal["model", "dataset"] = "model"
    checkpoint: str | None = None
    steps: int | None = Field(50, gt=0)
    sampler: Literal["fast", "pc", "consistency"] = "fast"
    guidance: float = Field(2.0, ge=0, allow_inf_nan=False)  # as `matgen sample --guidance`
    chemsys: list[str] = Field(default_factory=list)
    conditions: dict[str, float] = Field(default_factory=dict)
    pool_csv: str | None = None
    chunk_size: int = Field(64, gt=0)
    conditioned: bool = True
    finetune: FinetuneConfig | None = None

    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint) if self.checkpoint else DEFAULT_MODEL_DIR


class ScorerConfig(_Frozen):
    """How candidates are scored: ``surrogates`` (MLIP relax + hull + predictors) or ``dataset``
    (noisy labels looked up in ``labels_csv``: for simulated campaigns and tests).

    ``mlip``: the potential of the ``surrogates`` scorer (``sevennet``: SevenNet-l3i5, the
    default; ``sevennet-0``: SevenNet-0, faster; ``chgnet``; see the README's scoring section
    for how they compare).
    """

    kind: Literal["surrogates", "dataset"] = "surrogates"
    mlip: Literal["chgnet", "sevennet", "sevennet-0"] = "sevennet"  # = DEFAULT_MLIP (tested)
    relax: bool = True
    relax_steps: int = 100
    fmax: float = 0.1
    labels_csv: str | None = None
    noise: dict[str, float] = Field(default_factory=dict)
    chunk_size: int = Field(32, gt=0)


class OracleConfig(_Frozen):
    """Where labels come from.

    ``dataset``: a held-out labelled CSV, matched by id or by structure (simulated lab);
    ``mlip``: a higher-fidelity MLIP relaxation (tighter ``fmax``, more ``steps``);
    ``lab``: the batch is exported to ``outbox`` and the round resumes after
    ``matgen campaign import-results``;
    ``dft``: GPAW DFT (the ``dft`` extra, :class:`matgen.campaign.DFTOracle`), one calculation
    per candidate (a Prefect task each in ``matgen campaign run``), cached in
    ``<work_dir>/dft_cache``; ``ecut_ev`` / ``kpt_density`` override the convergence-tested
    settings, ``dft_time_limit_s`` is the wall-clock limit of one calculation, ``dft_relax``
    relaxes cell and positions from the scorer's structure, ``dft_hull`` also computes the
    energy above the GPAW hull (the competing phases' calculations are the costly part),
    ``dft_corrections`` puts the numbers on the MP hull's scale (``mp``: PBE+U and MP's
    corrections where MP applies them, as the MLIP scores) or leaves them plain PBE (``none``).
    """

    kind: Literal["dataset", "mlip", "lab", "dft"] = "dataset"
    csv: str | None = None
    id_column: str = "material_id"
    match: Literal["id", "structure"] = "id"
    properties: list[str] = Field(default_factory=list)
    mlip: Literal["chgnet", "sevennet", "sevennet-0"] = "sevennet"  # = DEFAULT_MLIP (tested)
    fmax: float = 0.02
    steps: int = 500
    ecut_ev: float | None = Field(None, gt=0)
    kpt_density: float | None = Field(None, gt=0)
    dft_time_limit_s: float = Field(1800.0, gt=0)
    dft_relax: bool = True
    dft_hull: bool = True
    dft_corrections: Literal["mp", "none"] = "mp"  # = matgen.dft.CORRECTION_SCHEMES (tested)

    def dft_settings(self):
        """The :class:`matgen.dft.DFTSettings` of ``kind: dft``."""
        from matgen.dft import DFTSettings

        base = DFTSettings(
            time_limit_s=self.dft_time_limit_s,
            relax=self.dft_relax,
            corrections=self.dft_corrections,
        )
        over = {"ecut_ev": self.ecut_ev, "kpt_density": self.kpt_density}
        return base.replace(**{k: v for k, v in over.items() if v is not None})


class AcquisitionConfig(_Frozen):
    """Batch selection: BoTorch acquisition over the round's pool.

    ``surrogate``: ``prior_gp`` fits each label's GP around the scorer's prediction and its
    ``_std`` (:class:`matgen.acquisition.PredictorPrior`; acceleration 11.5 +- 0.6 over random
    on ten report seeds of ``benchmarks/campaign_acceleration.py``, vs 8.3 for ``gp``);
    ``gp`` fits plain GPs on composition + cell features and the predictions; ``auto`` takes
    ``prior_gp`` when every pool and labelled candidate has a finite prediction and a positive
    ``_std`` for every objective property, else ``gp`` (``prior_gp`` does the same, with a
    warning).
    """

    kind: Literal["auto", "nei", "nehvi", "pof", "qpof", "margin_nei", "random"] = "auto"
    surrogate: Literal["auto", "gp", "prior_gp"] = "auto"
    min_labels_for_gp: int = 8
    num_samples: int = 128
    diversity: Literal["formula", "none"] = "formula"
    include_untested_from_earlier_rounds: bool = True


class TaskRunnerConfig(_Frozen):
    """Prefect task runner for the flows: ``threads`` (default) or ``ray``.

    With ``ray``, ``address`` is an existing cluster (``ray://host:10001`` or ``auto``) or None
    for a local cluster of ``num_workers`` worker processes; ``gpus_per_task`` /
    ``cpus_per_task`` are the Ray resources of each generation / scoring chunk.
    """

    kind: Literal["threads", "ray"] = "threads"
    max_workers: int = 2
    address: str | None = None
    num_workers: int = 2
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0


class GuardConfig(_Frozen):
    """Thresholds of the per-round guards (a guard that trips is flagged in the report)."""

    max_exploitation_z: float = 2.0
    min_distinct_fraction: float = 0.5
    hull_window: float = 0.1


class CampaignConfig(_Frozen):
    """A discovery campaign.

    Paths in the YAML (checkpoint, CSVs, ``work_dir``, a ``sqlite:///`` ``state_url``) are
    relative to the YAML file's folder, so every command finds the same state from any folder.
    """

    name: str
    seed: int = 0
    rounds: int = Field(2, ge=0)
    pool_size: int = Field(64, gt=0)
    batch_size: int = Field(8, gt=0)
    objectives: list[ObjectiveConfig] = Field(min_length=1)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    oracle: OracleConfig = Field(default_factory=OracleConfig)
    acquisition: AcquisitionConfig = Field(default_factory=AcquisitionConfig)
    task_runner: TaskRunnerConfig = Field(default_factory=TaskRunnerConfig)
    guards: GuardConfig = Field(default_factory=GuardConfig)
    train_csv: str | None = None
    work_dir: str = "runs/campaigns/{name}"
    state_url: str | None = None
    export_on_finish: bool = True
    #: seconds a claim on a step (generation, scoring, the oracle, ...) lasts without a
    #: heartbeat; a worker on another host takes over a crashed owner's claim after this
    lease_seconds: float = Field(60.0, gt=0)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\ "):
            raise ValueError("name must be non-empty without slashes or spaces")
        return v

    @model_validator(mode="after")
    def _check(self) -> CampaignConfig:
        if self.batch_size > self.pool_size:
            raise ValueError("batch_size must be <= pool_size")
        return self

    # ------------------------------------------------------------------ derived
    def work_path(self) -> Path:
        return Path(self.work_dir.format(name=self.name))

    def database_url(self) -> str:
        """The state store URL: ``state_url`` or SQLite in the work folder."""
        if self.state_url:
            return self.state_url
        return f"sqlite:///{(self.work_path() / 'state.db').as_posix()}"

    def round_seed(self, round_index: int) -> int:
        """A per-round seed derived from the campaign seed."""
        return (self.seed * 1_000_003 + round_index * 7919) % (2**31 - 1)

    def digest(self) -> str:
        """A short hash of the config (part of cache keys)."""
        return hashlib.sha256(
            json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()[:16]

    def property_names(self) -> list[str]:
        """Objective properties in config order (no duplicates)."""
        return list(dict.fromkeys(o.property for o in self.objectives))


#: Top-level keys that do not change what a campaign computes (free to change between runs).
OPERATIONAL_KEYS = ("rounds", "task_runner", "work_dir", "state_url", "export_on_finish",
                    "lease_seconds", "guards")


def _flatten(obj, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict):
        out: dict[str, object] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    if isinstance(obj, list) and obj and any(isinstance(x, dict | list) for x in obj):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: obj}


def _short(v: object) -> str:
    r = json.dumps(v) if v is not None else "unset"
    return r if len(r) <= 60 else r[:57] + "..."


def config_changes(stored: dict, cfg: CampaignConfig) -> list[str]:
    """What differs between a campaign's stored config and ``cfg`` (``key: old -> new``).

    The stored dict is read through the current schema first (defaults of newer fields
    filled in); keys in :data:`OPERATIONAL_KEYS` are ignored.
    """
    try:
        old = CampaignConfig.model_validate(stored).model_dump(mode="json")
    except Exception:  # noqa: BLE001 - a config of an older schema: compare as stored
        old = dict(stored)
    new = cfg.model_dump(mode="json")
    for k in OPERATIONAL_KEYS:
        old.pop(k, None)
        new.pop(k, None)
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {_short(a.get(k))} -> {_short(b.get(k))}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None or "://" in value:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def load_config(path: str | Path, **overrides) -> CampaignConfig:
    """Read a campaign YAML; relative paths are resolved against the YAML's folder.

    ``$MATGEN_DATA_DIR`` and ``~`` in paths are expanded. ``overrides`` replace top-level keys.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not readable YAML, or not a mapping.
        pydantic.ValidationError: invalid config.
    """
    import os

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: {at}YAML syntax error: {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings (name:, objectives:, ...), "
                          f"got a {type(raw).__name__}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    base = path.resolve().parent

    def expand(v):
        return os.path.expandvars(v) if isinstance(v, str) else v

    for section, keys in (
        ("generator", ("checkpoint", "pool_csv")),
        ("scorer", ("labels_csv",)),
        ("oracle", ("csv",)),
    ):
        sec = raw.get(section) or {}
        if not isinstance(sec, dict):
            continue  # pydantic names the bad section
        for k in keys:
            if isinstance(sec.get(k), str) and sec[k]:
                sec[k] = _resolve(base, expand(sec[k]))
        if sec:
            raw[section] = sec
    gen = raw.get("generator")
    ft = gen.get("finetune") if isinstance(gen, dict) else None
    if isinstance(ft, dict) and isinstance(ft.get("replay_csv"), str) and ft["replay_csv"]:
        ft["replay_csv"] = _resolve(base, expand(ft["replay_csv"]))
    for k in ("train_csv",):
        if isinstance(raw.get(k), str) and raw[k]:
            raw[k] = _resolve(base, expand(raw[k]))
    # the work folder (state DB, outbox, exports) too: `campaign status` run from another
    # folder reads the same state instead of creating an empty one
    if isinstance(raw.get("work_dir") or "", str):
        raw["work_dir"] = _resolve(base, expand(raw.get("work_dir") or "runs/campaigns/{name}"))
    if isinstance(raw.get("state_url"), str) and raw["state_url"].startswith("sqlite:///"):
        p = raw["state_url"][len("sqlite:///") :]
        raw["state_url"] = "sqlite:///" + _resolve(base, expand(p))
    return CampaignConfig.model_validate(raw)

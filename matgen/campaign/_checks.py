"""Checks of a campaign config against what its components produce, before any work.

Every objective must be labelled by the oracle (a hit is judged on oracle labels) and be
produced by the scorer or declared by the oracle; a misspelled property is named with the
closest known one. Only config-level facts are read (CSV headers, the predictor list), so the
check costs well under a second.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from matgen.campaign._config import CampaignConfig, config_changes

if TYPE_CHECKING:  # pragma: no cover
    from matgen.campaign._store import CampaignStore

log = logging.getLogger("matgen.campaign")

#: What the surrogate scorer returns besides its property predictors.
SURROGATE_OUTPUTS = ("energy_per_atom", "e_form_per_atom", "e_above_hull")
#: What the MLIP oracle labels (e_above_hull through the MP reference hull).
MLIP_ORACLE_OUTPUTS = ("energy_per_atom", "e_above_hull")
#: What the DFT oracle labels (GPAW PBE; e_above_hull on the GPAW hull of the competing phases).
DFT_ORACLE_OUTPUTS = ("energy_per_atom", "e_form_per_atom", "e_above_hull")
PREDICTOR_DIR = Path(__file__).resolve().parents[1] / "assets" / "predictors"


class CampaignConfigError(ValueError):
    """A config that cannot work; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class ConfigChangedError(ValueError):
    """The config differs from the one the campaign was started with (one line)."""


def _csv_columns(path: str | None, what: str, problems: list[str]) -> list[str] | None:
    if not path:
        problems.append(f"{what} is not set")
        return None
    if not Path(path).exists():
        problems.append(f"{what} not found: {path}")
        return None
    import pandas as pd

    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except Exception as exc:  # noqa: BLE001 - any unreadable CSV is named
        problems.append(f"{what} {path}: unreadable CSV ({str(exc).splitlines()[0]})")
        return None


def predictor_labels(folder: Path = PREDICTOR_DIR) -> list[str]:
    """Labels of the shipped property predictors (read from their JSON, no weights loaded)."""
    out = []
    for p in sorted(folder.glob("*/predictor.json")):
        try:
            out.append(str(json.loads(p.read_text())["label"]))
        except (OSError, ValueError, KeyError):
            continue
    return out


def _hint(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_config(cfg: CampaignConfig) -> list[str]:
    """Check the objectives against the scorer's and the oracle's outputs.

    Returns:
        Warnings (an objective only the oracle produces: selection learns it from labels).

    Raises:
        CampaignConfigError: one line per problem (misspelled or unproduced objectives,
            missing CSVs).
    """
    problems: list[str] = []
    warnings: list[str] = []
    if cfg.generator.kind == "dataset":
        _csv_columns(cfg.generator.pool_csv, "generator.pool_csv", problems)
    if cfg.scorer.kind == "dataset":
        cols = _csv_columns(cfg.scorer.labels_csv, "scorer.labels_csv", problems)
        scorer_out = set(cols or []) - {"material_id", "cif"}
        scorer_name = f"the dataset scorer ({Path(cfg.scorer.labels_csv or '?').name})"
    else:
        scorer_out = set(SURROGATE_OUTPUTS) | set(predictor_labels())
        scorer_name = "the surrogates scorer"
    o = cfg.oracle
    oracle_out: set[str] | None  # None: the lab without declared properties (labels anything)
    if o.kind == "dataset":
        ocols = _csv_columns(o.csv, "oracle.csv", problems)
        if ocols is None:
            raise CampaignConfigError(problems)  # objectives cannot be judged without it
        oracle_out = set(ocols) - {"cif", o.id_column}
        oracle_name = f"the dataset oracle ({Path(o.csv or '?').name})"
        for p in o.properties:
            if p not in oracle_out:
                problems.append(
                    f"oracle.properties: {oracle_name} has no column {p!r}{_hint(p, oracle_out)}"
                )
    elif o.kind == "mlip":
        oracle_out = set(MLIP_ORACLE_OUTPUTS)
        oracle_name = "the mlip oracle"
    elif o.kind == "dft":
        oracle_out = set(DFT_ORACLE_OUTPUTS)
        oracle_name = "the dft oracle"
        from matgen.dft import gpaw_available

        if not gpaw_available():
            problems.append(
                "oracle.kind: dft needs GPAW and its PAW datasets (the dft extra): "
                "bash scripts/install_dft.sh"
            )
    else:
        oracle_out = set(o.properties) if o.properties else None
        oracle_name = "the lab oracle (oracle.properties)"
    known = scorer_out | (oracle_out or set())
    for obj in cfg.objectives:
        p = obj.property
        where = f"objective {p!r}"
        if oracle_out is not None and p not in oracle_out:
            if p in scorer_out:
                problems.append(
                    f"{where}: {oracle_name} does not label it (it labels "
                    f"{', '.join(sorted(oracle_out)) or 'nothing'}), so no candidate can be "
                    "judged a hit"
                )
            else:
                problems.append(
                    f"{where}: produced by neither {scorer_name} nor {oracle_name}{_hint(p, known)}"
                )
        elif p not in scorer_out:
            if oracle_out is None:
                problems.append(
                    f"{where}: {scorer_name} does not predict it{_hint(p, known)}; a property "
                    "only the lab measures must be listed in oracle.properties"
                )
            else:
                warnings.append(
                    f"{where}: {scorer_name} does not predict it; selection "
                    "learns it from oracle labels only"
                )
    if problems:
        raise CampaignConfigError(problems)
    return warnings


def settle_config(
    store: CampaignStore, cfg: CampaignConfig, next_round: Callable[[], int], accept: bool
) -> int:
    """The config version a campaign runs with: the stored one when ``cfg`` equals it (up to
    operational keys), else a new version from round ``next_round()`` on when ``accept``.

    Raises:
        ConfigChangedError: ``cfg`` differs from the stored config and ``accept`` is not set.
    """
    changes = config_changes(store.stored_config(), cfg)
    if not changes:
        return store.config_version()
    nxt = next_round()
    if not accept:
        raise ConfigChangedError(
            f"campaign {cfg.name!r} was started with another config: "
            f"{'; '.join(changes)} (pass --accept-config-change to use the new config from "
            f"round {nxt} on, or give the campaign a new name)"
        )
    v = store.record_config(cfg.model_dump(mode="json"), "; ".join(changes), nxt)
    log.warning(
        "campaign %s: config version %d from round %d: %s", cfg.name, v, nxt, "; ".join(changes)
    )
    return v

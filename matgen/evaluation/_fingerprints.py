"""Structure and composition fingerprints of CDVAE's coverage metric (via matminer).

* structure: matminer ``CrystalNNFingerprint.from_preset("ops")`` of every site (61 features),
  averaged over sites;
* composition: matminer ``ElementProperty.from_preset("magpie")`` (132 features), standardized
  with CDVAE's fixed constants (:mod:`matgen.evaluation._cdvae_scaler`), NaN -> 0.

matminer (>=0.9) is an optional dependency of the evaluation layer.
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Composition, Structure


def _require_matminer():
    try:
        from matminer.featurizers.composition.composite import ElementProperty
        from matminer.featurizers.site.fingerprint import CrystalNNFingerprint
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "coverage metrics need matminer (pip install 'matminer>=0.9,<0.11')"
        ) from e
    return CrystalNNFingerprint, ElementProperty


@cache
def _featurizers():
    cnn, ep = _require_matminer()
    return cnn.from_preset("ops"), ep.from_preset("magpie")


def structure_fingerprint(structure: Structure) -> np.ndarray | None:
    """Site-averaged CrystalNN ``ops`` fingerprint, ``(61,)``; ``None`` if CrystalNN fails
    (CDVAE then counts the crystal as invalid)."""
    cnn, _ = _featurizers()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            site_fps = [cnn.featurize(structure, i) for i in range(len(structure))]
    except Exception:  # noqa: BLE001 - as CDVAE: any failure means "no fingerprint"
        return None
    return np.asarray(site_fps, dtype=float).mean(axis=0)


def composition_fingerprint(composition: Composition) -> np.ndarray:
    """Magpie ``ElementProperty`` features, ``(132,)`` (unscaled; may contain NaN)."""
    _, ep = _featurizers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(ep.featurize(composition), dtype=float)


def scale_composition_fingerprints(
    fps: np.ndarray, means: np.ndarray | None = None, stds: np.ndarray | None = None
) -> np.ndarray:
    """Standardize ``(n, 132)`` composition fingerprints; NaN (and inf) become 0.

    Args:
        fps: raw fingerprints.
        means, stds: ``(132,)``; default CDVAE's published constants.
    """
    from matgen.evaluation._cdvae_scaler import COMP_SCALER_MEANS, COMP_SCALER_STDS

    m = np.asarray(COMP_SCALER_MEANS if means is None else means, dtype=float)
    s = np.asarray(COMP_SCALER_STDS if stds is None else stds, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.asarray(fps, dtype=float).reshape(-1, m.shape[0]) - m) / s
    return np.where(np.isfinite(z), z, 0.0)

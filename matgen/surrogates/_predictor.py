"""Property predictors with calibrated uncertainty and an out-of-distribution score.

A predictor is a deep ensemble (Lakshminarayanan et al. 2017) of small mean-variance MLPs on the
e3nn power-spectrum descriptor of :mod:`matgen.surrogates._features`. Each member is trained
with the Gaussian negative log-likelihood from its own random initialisation and data order;
the ensemble's predictive variance is the mixture variance (aleatoric + epistemic). A single
post-hoc scale, fitted on a validation split by maximum likelihood, calibrates the standard
deviation so that 68 % / 95 % intervals cover about 68 % / 95 % of held-out labels.

Out-of-distribution score: the mean distance of a candidate's embedding (the first member's last
hidden layer) to its k nearest training embeddings, expressed as the percentile of the training
set's own (leave-one-out) k-NN distances; 1.0 means farther than every training point's
neighbours.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from matgen.surrogates._features import FeaturizerConfig, feature_dim, featurize

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

    from matgen.crystal import CrystalBatch

FORMAT_VERSION = 1
#: Standardised descriptors are clipped to [-X_CLIP, X_CLIP].
X_CLIP = 6.0
#: Labels that cannot be negative: the predictive mean is clipped at 0 (a metal's 0 eV gap sits
#: at the edge of a Gaussian, whose mean can land a few meV below it: -0.002 eV in a lab list).
#: The standard deviation is left as calibrated.
NONNEGATIVE_LABELS = frozenset({"band_gap", "bulk_modulus", "shear_modulus"})


@dataclass(frozen=True)
class PredictorConfig:
    """Ensemble and training settings.

    Attributes:
        n_members: ensemble size.
        hidden: hidden widths of each member's MLP.
        epochs: training epochs (the best validation epoch is kept when a val split is given).
        lr, weight_decay, batch_size: AdamW settings.
        warmup_epochs: epochs of plain MSE before the Gaussian NLL (stabilises the variance head).
        ood_k: neighbours of the OOD score.
        ood_max_ref: training embeddings kept for the OOD score (a random subset).
        seed: seed of member initialisation and data order.
    """

    n_members: int = 5
    hidden: tuple[int, ...] = (128, 64)
    epochs: int = 80
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    warmup_epochs: int = 5
    ood_k: int = 5
    ood_max_ref: int = 3000
    seed: int = 0


class _Member(nn.Module):
    """MLP: standardised descriptor -> (mean, raw variance) of the standardised label."""

    def __init__(self, d_in: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = d_in
        for h in hidden:
            layers += [nn.Linear(d, h), nn.SiLU()]
            d = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.body(x)
        out = self.head(h)
        var = nn.functional.softplus(out[:, 1]) + 1e-6
        return out[:, 0], var, h


@dataclass
class Prediction:
    """Predictions for B structures (label units).

    Attributes:
        mean: ``(B,)`` ensemble mean.
        std: ``(B,)`` calibrated predictive standard deviation.
        epistemic_std: ``(B,)`` spread of the members' means (ensemble disagreement).
        ood_score: ``(B,)`` in [0, 1], percentile of the k-NN embedding distance.
    """

    mean: np.ndarray
    std: np.ndarray
    epistemic_std: np.ndarray
    ood_score: np.ndarray


@dataclass
class PropertyPredictor:
    """A trained deep ensemble for one label; see the module docstring.

    Use :func:`fit_predictor` to train, :meth:`predict` for mean and std, :meth:`save` /
    :meth:`load` (safetensors + JSON), :meth:`update` to warm-start on new labels.
    """

    label: str
    members: list[_Member]
    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: float
    y_std: float
    config: PredictorConfig
    featurizer: FeaturizerConfig = field(default_factory=FeaturizerConfig)
    calibration_scale: float = 1.0
    ood_ref: torch.Tensor | None = None
    ood_ref_knn: torch.Tensor | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ inference
    def _x(self, feats: torch.Tensor) -> torch.Tensor:
        # clipped so that a feature rare in training (an element seen a few times) cannot
        # push a candidate far outside the range the MLPs were fitted on
        return ((feats - self.x_mean) / self.x_std).clamp(-X_CLIP, X_CLIP).float()

    @torch.no_grad()
    def _raw(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.nan_to_num(self._x(feats))
        mus, vars_, h0 = [], [], None
        for k, m in enumerate(self.members):
            m.eval()
            mu, var, h = m(x)
            mus.append(mu)
            vars_.append(var)
            if k == 0:
                h0 = h
        return torch.stack(mus), torch.stack(vars_), h0

    def predict_features(self, feats: torch.Tensor) -> Prediction:
        """Predict from precomputed descriptors ``(B, D)``; NaN rows give NaN outputs."""
        mus, vars_, h = self._raw(feats)
        mean = mus.mean(0)
        var = (vars_ + mus**2).mean(0) - mean**2
        epi = mus.std(0, unbiased=False) if len(self.members) > 1 else torch.zeros_like(mean)
        bad = ~torch.isfinite(feats).all(1)
        mean = mean * self.y_std + self.y_mean
        if self.label in NONNEGATIVE_LABELS:
            mean = mean.clamp_min(0.0)
        std = var.clamp_min(0).sqrt() * self.y_std * self.calibration_scale
        epi = epi * self.y_std
        ood = self.ood_score_embeddings(h)
        for t in (mean, std, epi, ood):
            t[bad] = math.nan
        return Prediction(mean.numpy(), std.numpy(), epi.numpy(), ood.numpy())

    def predict(self, structures: list[Structure] | CrystalBatch) -> Prediction:
        """Mean and calibrated std of the label for each structure (plus OOD score)."""
        return self.predict_features(featurize(_structures(structures), self.featurizer))

    @torch.no_grad()
    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, hidden[-1])`` embedding (first member's last hidden layer) of descriptors."""
        return self._raw(feats)[2]

    def ood_score_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        """Percentile (in [0, 1]) of each embedding's k-NN distance among the training set's."""
        if self.ood_ref is None or self.ood_ref_knn is None:
            return torch.full((emb.shape[0],), math.nan)
        d = knn_distance(emb.float(), self.ood_ref.float(), self.config.ood_k)
        ref = self.ood_ref_knn.float()
        return torch.searchsorted(ref.contiguous(), d.contiguous(), right=True).float() / len(ref)

    # ------------------------------------------------------------------ warm start
    def update(
        self,
        structures: list[Structure] | CrystalBatch,
        labels: np.ndarray | torch.Tensor | None = None,
        epochs: int = 20,
        features: torch.Tensor | None = None,
    ) -> PropertyPredictor:
        """Fine-tune every member on new (or all) labelled data; returns ``self``.

        Keeps the input and label normalisation and the calibration scale; refreshes the OOD
        reference with the new structures added.
        """
        feats = features if features is not None else featurize(
            _structures(structures), self.featurizer)
        y = torch.as_tensor(_labels(structures, labels, self.label), dtype=torch.float32)
        ok = torch.isfinite(y) & torch.isfinite(feats).all(1)
        x, yz = self._x(feats[ok]), (y[ok] - self.y_mean) / self.y_std
        cfg = self.config
        for k, m in enumerate(self.members):
            _train_member(m, x, yz, None, None, cfg, epochs, seed=cfg.seed + 1000 + k,
                          warmup=0)
        emb = self.embed(feats[ok])
        ref = emb if self.ood_ref is None else torch.cat([self.ood_ref.float(), emb])
        self._set_ood_reference(ref)
        return self

    def _set_ood_reference(self, emb: torch.Tensor) -> None:
        g = torch.Generator().manual_seed(self.config.seed)
        if len(emb) > self.config.ood_max_ref:
            emb = emb[torch.randperm(len(emb), generator=g)[: self.config.ood_max_ref]]
        self.ood_ref = emb.half()
        self.ood_ref_knn = torch.sort(
            knn_distance(emb.float(), emb.float(), self.config.ood_k, exclude_self=True)
        ).values

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``path/weights.safetensors`` and ``path/predictor.json``."""
        from safetensors.torch import save_file

        from matgen._files import atomic_path, atomic_write_text

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {"x_mean": self.x_mean.float(), "x_std": self.x_std.float()}
        for k, m in enumerate(self.members):
            for name, t in m.state_dict().items():
                tensors[f"member{k}.{name}"] = t.detach().float().contiguous()
        if self.ood_ref is not None:
            tensors["ood_ref"] = self.ood_ref.contiguous()
            tensors["ood_ref_knn"] = self.ood_ref_knn.float().contiguous()
        with atomic_path(out / "weights.safetensors") as tmp:
            save_file(tensors, str(tmp))
        meta = {
            "format_version": FORMAT_VERSION,
            "label": self.label,
            "y_mean": self.y_mean,
            "y_std": self.y_std,
            "calibration_scale": self.calibration_scale,
            "config": asdict(self.config),
            "featurizer": self.featurizer.to_dict(),
            "metrics": self.metrics,
        }
        atomic_write_text(out / "predictor.json", json.dumps(meta, indent=1))
        return out

    @classmethod
    def load(cls, path: str | Path) -> PropertyPredictor:
        """Inverse of :meth:`save`."""
        from safetensors.torch import load_file

        p = Path(path)
        meta = json.loads((p / "predictor.json").read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{p}: unsupported predictor format {meta.get('format_version')}")
        t = load_file(str(p / "weights.safetensors"))
        ccfg = dict(meta["config"])
        ccfg["hidden"] = tuple(ccfg["hidden"])
        cfg = PredictorConfig(**ccfg)
        fcfg = FeaturizerConfig(**meta["featurizer"])
        members = []
        for k in range(cfg.n_members):
            m = _Member(feature_dim(fcfg), cfg.hidden)
            prefix = f"member{k}."
            m.load_state_dict({n[len(prefix):]: v for n, v in t.items() if n.startswith(prefix)})
            members.append(m.eval())
        return cls(
            label=meta["label"],
            members=members,
            x_mean=t["x_mean"],
            x_std=t["x_std"],
            y_mean=float(meta["y_mean"]),
            y_std=float(meta["y_std"]),
            config=cfg,
            featurizer=fcfg,
            calibration_scale=float(meta["calibration_scale"]),
            ood_ref=t.get("ood_ref"),
            ood_ref_knn=t.get("ood_ref_knn"),
            metrics=meta.get("metrics", {}),
        )


# ---------------------------------------------------------------------- training
def fit_predictor(
    data: list[Structure] | CrystalBatch | Any,
    label: str,
    config: PredictorConfig | None = None,
    labels: np.ndarray | None = None,
    val: list[Structure] | CrystalBatch | Any | None = None,
    val_labels: np.ndarray | None = None,
    features: torch.Tensor | None = None,
    val_features: torch.Tensor | None = None,
    featurizer: FeaturizerConfig | None = None,
    init: PropertyPredictor | None = None,
) -> PropertyPredictor:
    """Train a deep-ensemble predictor of ``label``.

    Args:
        data: training crystals: a ``CrystalBatch`` (labels from ``properties[label]``), a
            dataset with ``batch(indices)`` and ``len``, or pymatgen structures with ``labels``.
        label: the label's name (a CSV column, e.g. ``band_gap``).
        config: :class:`PredictorConfig`.
        labels: ``(B,)`` labels when ``data`` holds none; NaN rows are skipped.
        val: validation crystals: used to keep each member's best epoch and to fit the
            calibration scale (without it the scale stays 1).
        features, val_features: precomputed descriptors (skips featurisation).
        featurizer: descriptor settings.
        init: warm start: copy this predictor's members and normalisation, then train.

    Returns:
        A :class:`PropertyPredictor`.
    """
    cfg = config or PredictorConfig()
    fcfg = featurizer or (init.featurizer if init is not None else FeaturizerConfig())
    data = _as_batch_or_structures(data)
    feats = features if features is not None else featurize(_structures(data), fcfg)
    y = torch.as_tensor(_labels(data, labels, label), dtype=torch.float32)
    ok = torch.isfinite(y) & torch.isfinite(feats).all(1)
    if int(ok.sum()) < 2:
        raise ValueError(f"need at least 2 labelled, featurisable crystals for {label!r}")
    feats, y = feats[ok], y[ok]
    if init is not None:
        x_mean, x_std, y_mean, y_std = init.x_mean, init.x_std, init.y_mean, init.y_std
    else:
        x_mean = feats.mean(0)
        x_std = feats.std(0).clamp_min(1e-3)
        y_mean, y_std = float(y.mean()), float(y.std().clamp_min(1e-6))
    pred = PropertyPredictor(
        label=label, members=[], x_mean=x_mean, x_std=x_std, y_mean=y_mean, y_std=y_std,
        config=cfg, featurizer=fcfg,
    )
    x, yz = pred._x(feats), (y - y_mean) / y_std
    xv = yv = None
    if val is not None or val_features is not None:
        val = _as_batch_or_structures(val) if val is not None else None
        fv = val_features if val_features is not None else featurize(_structures(val), fcfg)
        lv = torch.as_tensor(_labels(val, val_labels, label), dtype=torch.float32)
        okv = torch.isfinite(lv) & torch.isfinite(fv).all(1)
        xv, yv = pred._x(fv[okv]), (lv[okv] - y_mean) / y_std
    for k in range(cfg.n_members):
        if init is not None and k < len(init.members):
            m = _Member(x.shape[1], cfg.hidden)
            m.load_state_dict(init.members[k].state_dict())
        else:
            torch.manual_seed(cfg.seed * 7919 + k)
            m = _Member(x.shape[1], cfg.hidden)
        _train_member(m, x, yz, xv, yv, cfg, cfg.epochs, seed=cfg.seed * 7919 + k,
                      warmup=0 if init is not None else cfg.warmup_epochs)
        pred.members.append(m.eval())
    if xv is not None and len(xv) > 1:
        p = pred.predict_features(xv * pred.x_std + pred.x_mean)
        yv_l = (yv * y_std + y_mean).numpy()
        pred.calibration_scale = calibrate_std(p.mean, p.std, yv_l)
        pred.metrics["val"] = interval_metrics(p.mean, p.std * pred.calibration_scale, yv_l)
    pred._set_ood_reference(pred.embed(feats))
    return pred


def _train_member(m, x, y, xv, yv, cfg: PredictorConfig, epochs: int, seed: int,
                  warmup: int) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    best, best_state = math.inf, None
    for ep in range(epochs):
        m.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            mu, var, _ = m(x[idx])
            if ep < warmup:
                loss = ((mu - y[idx]) ** 2).mean()
            else:
                loss = nn.functional.gaussian_nll_loss(mu, y[idx], var)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if xv is not None and len(xv) and ep >= warmup:
            m.eval()
            with torch.no_grad():
                mu, var, _ = m(xv)
                v = float(nn.functional.gaussian_nll_loss(mu, yv, var))
            if v < best:
                best, best_state = v, {k: t.clone() for k, t in m.state_dict().items()}
    if best_state is not None:
        m.load_state_dict(best_state)
    m.eval()


# ---------------------------------------------------------------------- calibration
def calibrate_std(mean: np.ndarray, std: np.ndarray, y: np.ndarray) -> float:
    """Maximum-likelihood scale ``s`` for Gaussian intervals: ``s^2 = mean(((y-mu)/std)^2)``.

    Multiplying ``std`` by ``s`` makes the standardised residuals unit-variance on the given
    (validation) split, the usual one-parameter post-hoc variance calibration.
    """
    mean, std, y = (np.asarray(a, dtype=float) for a in (mean, std, y))
    ok = np.isfinite(mean) & np.isfinite(std) & np.isfinite(y) & (std > 0)
    if ok.sum() == 0:
        return 1.0
    z2 = ((y[ok] - mean[ok]) / std[ok]) ** 2
    return float(np.sqrt(z2.mean()))


def interval_metrics(mean: np.ndarray, std: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and the coverage of central 68 % / 95 % Gaussian intervals."""
    mean, std, y = (np.asarray(a, dtype=float) for a in (mean, std, y))
    ok = np.isfinite(mean) & np.isfinite(std) & np.isfinite(y)
    err = np.abs(y[ok] - mean[ok])
    return {
        "n": int(ok.sum()),
        "mae": float(err.mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "coverage_68": float((err <= 0.9945 * std[ok]).mean()),
        "coverage_95": float((err <= 1.96 * std[ok]).mean()),
        "mean_std": float(std[ok].mean()),
    }


def knn_distance(q: torch.Tensor, ref: torch.Tensor, k: int, exclude_self: bool = False
                 ) -> torch.Tensor:
    """``(Q,)`` mean Euclidean distance of each query row to its ``k`` nearest ``ref`` rows."""
    kk = min(k + int(exclude_self), len(ref))
    out = []
    for i in range(0, len(q), 1024):
        d = torch.cdist(q[i : i + 1024], ref)
        v = torch.topk(d, kk, dim=1, largest=False).values
        out.append(v[:, int(exclude_self):].mean(1))
    return torch.cat(out) if out else torch.zeros(0)


# ---------------------------------------------------------------------- input plumbing
def _as_batch_or_structures(data):
    if isinstance(data, list):
        return data
    if hasattr(data, "to_structures"):
        return data
    if hasattr(data, "batch") and hasattr(data, "__len__"):
        return data.batch(list(range(len(data))))
    return list(data)


def _structures(data) -> list[Structure]:
    if hasattr(data, "to_structures"):
        return data.to_structures()
    return list(data)


def _labels(data, labels, label: str) -> np.ndarray:
    if labels is not None:
        return np.asarray(labels, dtype=float)
    props = getattr(data, "properties", None)
    if isinstance(props, dict) and label in props:
        return props[label].detach().cpu().double().numpy()
    if isinstance(data, list) and data and all(label in (s.properties or {}) for s in data):
        return np.asarray([s.properties[label] for s in data], dtype=float)
    raise ValueError(f"no labels for {label!r}: pass labels= or a batch with that property")

"""Training the composition model (:mod:`matgen.models._composition`) on a dataset's cells.

Maximum likelihood with AdamW; each condition is dropped on its own with ``drop_prob`` and all of
a crystal's together with ``drop_all_prob`` (unconditioned de novo sampling, the default, reads
the all-missing input, so it is trained often); the weights of the epoch with the lowest
unconditioned validation NLL are kept (early stopping with ``patience`` epochs).

Fine-tuning (:func:`finetune_composition_model`, the campaign's generator step) continues a
trained model on a small set for a fixed number of optimizer steps, with the same loss and
condition dropping, so the compositions it proposes move towards those of the set.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from matgen.models import CompositionConfig, CompositionEnsemble, CompositionModel, encode

logger = logging.getLogger("matgen.training")


@dataclass
class CompositionTrainConfig:
    """Training settings of :func:`train_composition_model`.

    Attributes:
        epochs / patience: epochs at most; stop after ``patience`` epochs without a lower
            unconditioned validation NLL.
        batch_size, lr, weight_decay: AdamW on mini-batches of compositions.
        drop_prob / drop_all_prob: each condition is hidden with ``drop_prob``, all of a
            crystal's with ``drop_all_prob`` (the unconditioned input de novo sampling reads).
        calibrate_epochs / calibrate_lr: after training, the output layers' biases of the
            network as it samples (dropout off) are fitted by maximum likelihood on the train
            split for up to this many epochs (Adam at this rate; kept where the val NLL is
            lowest; 0 = off). Dropout leaves the dropout-free network's element distribution
            too flat (common light elements such as F, N, S drawn too rarely); this corrects it.
        seed: initialisation, data order and dropping.
        model: the network's shape (conditions and their scaling are filled in from the data).
    """

    epochs: int = 60
    patience: int = 10
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.1
    drop_prob: float = 0.2
    drop_all_prob: float = 0.3
    calibrate_epochs: int = 5
    calibrate_lr: float = 1e-2
    seed: int = 0
    model: CompositionConfig = field(default_factory=CompositionConfig)


def cell_compositions(dataset) -> list[dict[int, int]]:
    """``{Z: count}`` of each cell of a :class:`~matgen.data.CrystalDataset`."""
    out = []
    ptr = dataset.ptr.tolist()
    zs = dataset.atomic_numbers
    for i in range(len(ptr) - 1):
        z, c = torch.unique(zs[ptr[i] : ptr[i + 1]], return_counts=True)
        out.append({int(a): int(b) for a, b in zip(z, c)})
    return out


def condition_matrix(dataset, names: Sequence[str], absent_missing: bool = False
                     ) -> torch.Tensor:
    """``(B, C)`` raw labels of ``names`` (NaN where missing); ``absent_missing``: a name the
    dataset has no column for is an all-NaN column (no label given) instead of a KeyError (a
    fine-tuning set need not carry every condition the model reads)."""
    props = dataset.properties
    if absent_missing:
        nan = torch.full((len(dataset),), math.nan, dtype=torch.float64)
        props = {n: props.get(n, nan) for n in names}
    cols = [props[n].double() for n in names]
    return torch.stack(cols, 1) if cols else torch.zeros(len(dataset), 0, dtype=torch.float64)


def _mean_nll(model: CompositionModel | CompositionEnsemble, data, cond: torch.Tensor
              ) -> float:
    if not len(data):
        return math.nan
    model.eval()
    total = 0.0
    with torch.no_grad():
        for lo in range(0, len(data), 1024):
            el, cnt, valid = encode(data[lo : lo + 1024], model.cfg.num_types)
            total += float(model.nll(el, cnt, valid, model.normalise(cond[lo : lo + 1024])).sum())
    return total / len(data)


def train_composition_model(train_set, val_set, names: Sequence[str],
                            cfg: CompositionTrainConfig | None = None,
                            log: Callable[[str], None] = print
                            ) -> tuple[CompositionModel | CompositionEnsemble, dict]:
    """Train on ``train_set``'s cells, select on ``val_set`` (two CrystalDatasets); with
    ``cfg.model.members`` > 1, that many networks from seeds ``cfg.seed``, ``cfg.seed + 1``, ...
    form an ensemble (:class:`~matgen.models.CompositionEnsemble`).

    Returns:
        the model (each network at its best epoch) and a record (epochs, NLLs per crystal,
        seconds; per network under ``members`` for an ensemble).
    """
    cfg = cfg or CompositionTrainConfig()
    train, val = cell_compositions(train_set), cell_compositions(val_set)
    y_tr, y_va = condition_matrix(train_set, names), condition_matrix(val_set, names)
    mean = [float(np.nanmean(y_tr[:, j].numpy())) for j in range(len(names))]
    std = [float(np.nanstd(y_tr[:, j].numpy())) for j in range(len(names))]
    mcfg = cfg.model.model_copy(update={"conditions": list(names), "cond_mean": mean,
                                        "cond_std": std})
    config = {k: v for k, v in cfg.__dict__.items() if k != "model"}
    t0 = time.perf_counter()
    if mcfg.members == 1:
        model, record = _train_one(train, val, y_tr, y_va, mcfg, cfg, cfg.seed, log)
        record.update(train_crystals=len(train), val_crystals=len(val), train_config=config)
        return model, record
    nets, records = [], []
    for i in range(mcfg.members):
        log(f"member {i + 1} of {mcfg.members} (seed {cfg.seed + i})")
        one, rec = _train_one(train, val, y_tr, y_va, mcfg.model_copy(update={"members": 1}),
                              cfg, cfg.seed + i, log)
        nets.append(one)
        records.append(rec)
    ensemble = CompositionEnsemble.of(nets)
    none_va = torch.full_like(y_va, math.nan)
    record = {"val_nll": round(_mean_nll(ensemble, val, none_va), 4),
              "val_nll_conditioned": round(_mean_nll(ensemble, val, y_va), 4),
              "best_epoch": [r["best_epoch"] for r in records],
              "train_crystals": len(train), "val_crystals": len(val),
              "seconds": round(time.perf_counter() - t0, 1), "members": records,
              "train_config": config}
    return ensemble, record


def _epoch(model: CompositionModel, opt: torch.optim.Optimizer, train: list[dict[int, int]],
           y_tr: torch.Tensor, cfg: CompositionTrainConfig, rng: np.random.Generator,
           clip: bool) -> torch.Tensor:
    """One pass over ``train`` in shuffled mini-batches, conditions dropped as configured;
    returns the last batch's loss."""
    perm = rng.permutation(len(train))
    for lo in range(0, len(train), cfg.batch_size):
        idx = perm[lo : lo + cfg.batch_size]
        el, cnt, valid = encode([train[i] for i in idx], model.cfg.num_types)
        cond = model.normalise(y_tr[idx])
        cond[torch.rand(cond.shape) < cfg.drop_prob] = math.nan
        cond[torch.rand(len(idx)) < cfg.drop_all_prob] = math.nan
        loss = model.nll(el, cnt, valid, cond).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return loss


def _train_one(train: list[dict[int, int]], val: list[dict[int, int]], y_tr: torch.Tensor,
               y_va: torch.Tensor, mcfg: CompositionConfig, cfg: CompositionTrainConfig,
               seed: int, log: Callable[[str], None]) -> tuple[CompositionModel, dict]:
    """One network from ``seed``: AdamW epochs, kept at its lowest unconditioned val NLL."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = CompositionModel(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    none_va = torch.full_like(y_va, math.nan)
    best, best_state, best_epoch, curve = math.inf, None, -1, []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        loss = _epoch(model, opt, train, y_tr, cfg, rng, clip=True)
        v_none, v_cond = _mean_nll(model, val, none_va), _mean_nll(model, val, y_va)
        curve.append({"epoch": epoch, "train_nll": round(loss.item(), 4),
                      "val_nll": round(v_none, 4), "val_nll_conditioned": round(v_cond, 4)})
        log(f"epoch {epoch}: train NLL {loss.item():.3f}, val NLL {v_none:.3f} "
            f"(conditioned {v_cond:.3f}) per crystal")
        if v_none < best:
            best, best_epoch = v_none, epoch
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        elif epoch - best_epoch >= cfg.patience:
            break
    model.load_state_dict(best_state)
    record = {"best_epoch": best_epoch, "val_nll": round(best, 4), "seed": seed}
    if cfg.calibrate_epochs:
        record["calibration"] = _calibrate(model, train, val, y_tr, y_va, cfg, rng, log)
        record["val_nll"] = record["calibration"]["val_nll"]
    record.update(seconds=round(time.perf_counter() - t0, 1), curve=curve)
    return model.eval(), record


def _calibrate(model: CompositionModel, train: list[dict[int, int]], val: list[dict[int, int]],
               y_tr: torch.Tensor, y_va: torch.Tensor, cfg: CompositionTrainConfig,
               rng: np.random.Generator, log: Callable[[str], None]) -> dict:
    """Fit the element and count heads' output biases of the dropout-free network on the train
    split (everything else frozen); keep the epoch with the lowest unconditioned val NLL."""
    biases = [model.head_element.bias, model.head_count[-1].bias]
    frozen = [p for p in model.parameters() if all(p is not b for b in biases)]
    for p in frozen:
        p.requires_grad_(False)
    opt = torch.optim.Adam(biases, lr=cfg.calibrate_lr)
    none_va = torch.full_like(y_va, math.nan)
    best = before = _mean_nll(model, val, none_va)
    best_state, best_epoch, curve = [b.detach().clone() for b in biases], -1, []
    model.eval()
    for epoch in range(cfg.calibrate_epochs):
        _epoch(model, opt, train, y_tr, cfg, rng, clip=False)
        v = _mean_nll(model, val, none_va)
        curve.append(round(v, 4))
        log(f"calibration epoch {epoch}: val NLL {v:.3f} per crystal")
        if v < best:
            best, best_epoch = v, epoch
            best_state = [b.detach().clone() for b in biases]
    with torch.no_grad():
        for b, kept in zip(biases, best_state):
            b.copy_(kept)
    for p in frozen:
        p.requires_grad_(True)
    return {"val_nll_before": round(before, 4), "val_nll": round(best, 4),
            "best_epoch": best_epoch, "curve": curve}


def finetune_composition_model(model: CompositionModel | CompositionEnsemble,
                               compositions: Sequence[dict[int, int]], cond: torch.Tensor,
                               steps: int, cfg: CompositionTrainConfig | None = None
                               ) -> tuple[CompositionModel | CompositionEnsemble, dict]:
    """Continue training ``model`` (in place) on ``compositions`` with raw conditions ``cond``
    ``(B, C)`` (NaN = not given; normalised with the model's own ``cond_mean`` /
    ``cond_std``, so the scale it learned stays) for ``steps`` AdamW steps of
    ``cfg.batch_size`` compositions (``cfg.lr``, ``cfg.weight_decay``; conditions dropped with
    ``cfg.drop_prob`` / ``cfg.drop_all_prob`` as in training; each network of an ensemble from
    ``cfg.seed + i``). Deterministic given ``cfg.seed``; the global RNG is left as it was.

    No early stopping or bias calibration: the set is small and has no validation split, and
    a few steps at a low rate keep the parent's calibrated output layers close.

    Compositions the model cannot spell (an element above ``num_types``, more than
    ``max_atoms`` atoms or none) are left out with a warning.

    Returns:
        the model and a record: ``steps``, ``rows`` (used), ``dropped``, ``lr``, ``batch_size``
        and ``nll_before`` / ``nll_after`` (mean per crystal, conditioned on the rows' labels,
        dropout off).
    """
    cfg = cfg or CompositionTrainConfig()
    mcfg = model.cfg
    keep = [i for i, c in enumerate(compositions)
            if c and all(1 <= z <= mcfg.num_types for z in c)
            and 1 <= sum(c.values()) <= mcfg.max_atoms]
    dropped = len(compositions) - len(keep)
    if dropped:
        logger.warning("composition fine-tuning: %d of %d composition(s) left out (an element "
                     "above Z = %d or more than %d atoms)", dropped, len(compositions),
                     mcfg.num_types, mcfg.max_atoms)
    comps = [compositions[i] for i in keep]
    y = cond.double()[keep]
    record = {"steps": 0, "rows": len(comps), "dropped": dropped, "lr": cfg.lr,
              "batch_size": min(cfg.batch_size, max(1, len(comps)))}
    before = _mean_nll(model, comps, y)
    record["nll_before"] = round(before, 4) if comps else None
    if not comps or steps < 1:
        record["nll_after"] = record["nll_before"]
        return model.eval(), record
    nets = list(model.members) if isinstance(model, CompositionEnsemble) else [model]
    one = dataclasses.replace(cfg, batch_size=record["batch_size"])
    with torch.random.fork_rng(devices=[]):
        for i, net in enumerate(nets):
            _finetune_one(net, comps, y, steps, one, cfg.seed + i)
    record.update(steps=steps, nll_after=round(_mean_nll(model, comps, y), 4))
    return model.eval(), record


def _finetune_one(net: CompositionModel, comps: list[dict[int, int]], y: torch.Tensor,
                  steps: int, cfg: CompositionTrainConfig, seed: int) -> None:
    """``steps`` AdamW steps on ``cfg.batch_size`` compositions each, drawn from seeded
    permutations (one pass after another); one :func:`_epoch` per step."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order: list[int] = []
    net.train()
    for _ in range(steps):
        if len(order) < cfg.batch_size:
            order += rng.permutation(len(comps)).tolist()
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        _epoch(net, opt, [comps[i] for i in idx], y[idx], cfg, rng, clip=True)
    net.eval()

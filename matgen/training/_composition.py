"""Training the composition model (:mod:`matgen.models._composition`) on a dataset's cells.

Maximum likelihood with AdamW; each condition is dropped on its own with ``drop_prob`` and all of
a crystal's together with ``drop_all_prob`` (unconditioned de novo sampling, the default, reads
the all-missing input, so it is trained often); the weights of the epoch with the lowest
unconditioned validation NLL are kept (early stopping with ``patience`` epochs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from matgen.models import CompositionConfig, CompositionModel, encode


@dataclass
class CompositionTrainConfig:
    """Training settings of :func:`train_composition_model`.

    Attributes:
        epochs / patience: epochs at most; stop after ``patience`` epochs without a lower
            unconditioned validation NLL.
        batch_size, lr, weight_decay: AdamW on mini-batches of compositions.
        drop_prob / drop_all_prob: each condition is hidden with ``drop_prob``, all of a
            crystal's with ``drop_all_prob`` (the unconditioned input de novo sampling reads).
        seed: initialisation, data order and dropping.
        model: the network's shape (conditions and their scaling are filled in from the data).
    """

    epochs: int = 60
    patience: int = 10
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-2
    drop_prob: float = 0.2
    drop_all_prob: float = 0.3
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


def condition_matrix(dataset, names: Sequence[str]) -> torch.Tensor:
    """``(B, C)`` raw labels of ``names`` (NaN where missing)."""
    cols = [dataset.properties[n].double() for n in names]
    return torch.stack(cols, 1) if cols else torch.zeros(len(dataset), 0, dtype=torch.float64)


def _mean_nll(model: CompositionModel, data, cond: torch.Tensor) -> float:
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
                            ) -> tuple[CompositionModel, dict]:
    """Train on ``train_set``'s cells, select on ``val_set`` (two CrystalDatasets).

    Returns:
        the model at its best epoch and a record (epochs, NLLs per crystal, seconds).
    """
    cfg = cfg or CompositionTrainConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train, val = cell_compositions(train_set), cell_compositions(val_set)
    y_tr, y_va = condition_matrix(train_set, names), condition_matrix(val_set, names)
    mean = [float(np.nanmean(y_tr[:, j].numpy())) for j in range(len(names))]
    std = [float(np.nanstd(y_tr[:, j].numpy())) for j in range(len(names))]
    mcfg = cfg.model.model_copy(update={"conditions": list(names), "cond_mean": mean,
                                        "cond_std": std})
    model = CompositionModel(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    none_va = torch.full_like(y_va, math.nan)
    best, best_state, best_epoch, curve = math.inf, None, -1, []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        perm = rng.permutation(len(train))
        for lo in range(0, len(train), cfg.batch_size):
            idx = perm[lo : lo + cfg.batch_size]
            el, cnt, valid = encode([train[i] for i in idx], mcfg.num_types)
            cond = model.normalise(y_tr[idx])
            cond[torch.rand(cond.shape) < cfg.drop_prob] = math.nan
            cond[torch.rand(len(idx)) < cfg.drop_all_prob] = math.nan
            loss = model.nll(el, cnt, valid, cond).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
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
    record = {"best_epoch": best_epoch, "val_nll": round(best, 4),
              "train_crystals": len(train), "val_crystals": len(val),
              "seconds": round(time.perf_counter() - t0, 1), "curve": curve,
              "train_config": {k: v for k, v in cfg.__dict__.items() if k != "model"}}
    return model.eval(), record

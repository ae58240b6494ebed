"""The composition model: which atoms a de novo cell holds, drawn before its structure.

An autoregressive network over a cell's ``(element, count)`` pairs, elements in ascending Pauling
electronegativity (cations first; elements without a value last, ties by Z), each element at a
higher rank than the one before (so a composition has one spelling and no element twice), counts
within the cell's atom budget. A GRU reads the pairs; its initial state comes from the property
conditions (each one given or missing, missing ones as a learned null vector, as the denoiser's
condition embedding). Composition-first de novo generation draws a composition here and then
predicts its structure with the denoiser's CSP mode (:mod:`matgen.generate`).

Files: ``composition.safetensors`` (weights) + ``composition.json`` (config, training record)
beside a denoiser's ``model.safetensors``.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file
from torch import nn

COMPOSITION_WEIGHTS = "composition.safetensors"
COMPOSITION_META = "composition.json"
_NEG = -1e9


class CompositionConfig(BaseModel):
    """Shape of a :class:`CompositionModel` and the scaling of its conditions.

    Attributes:
        hidden / layers / dropout: the GRU.
        max_atoms: atoms per cell at most (the denoiser's training limit).
        num_types: elements Z = 1 .. num_types.
        conditions: property names, in the order of the condition columns.
        cond_mean / cond_std: training mean and standard deviation of each condition.
        members: networks of this shape whose next-step distributions are averaged (an
            ensemble trained from different seeds; 1 = a single network).
    """

    model_config = ConfigDict(extra="forbid")
    hidden: int = Field(default=256, ge=8)
    layers: int = Field(default=2, ge=1)
    dropout: float = Field(default=0.5, ge=0.0, lt=1.0)
    max_atoms: int = Field(default=20, ge=1)
    num_types: int = Field(default=94, ge=2)
    conditions: list[str] = Field(default_factory=list)
    cond_mean: list[float] = Field(default_factory=list)
    cond_std: list[float] = Field(default_factory=list)
    members: int = Field(default=1, ge=1)


@lru_cache(maxsize=4)
def element_ranks(num_types: int = 94) -> tuple[int, ...]:
    """Rank of Z = 1 .. num_types (index Z - 1) in the composition order."""
    import warnings

    from pymatgen.core import Element

    def key(z: int) -> tuple[float, int]:
        with warnings.catch_warnings():  # noble gases have no Pauling value (pymatgen warns)
            warnings.simplefilter("ignore")
            x = Element.from_Z(z).X
        return (x if math.isfinite(x) else math.inf, z)

    order = sorted(range(1, num_types + 1), key=key)
    ranks = [0] * num_types
    for r, z in enumerate(order):
        ranks[z - 1] = r
    return tuple(ranks)


def encode(compositions: list[dict[int, int]], num_types: int = 94
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(elements, counts, valid)`` of shape ``(B, L)``: each composition's pairs in the
    model's order, then a stop (element 0); ``valid`` marks the pairs and the stop."""
    ranks = element_ranks(num_types)
    length = max(len(c) for c in compositions) + 1
    el = torch.zeros(len(compositions), length, dtype=torch.long)
    cnt = torch.zeros_like(el)
    valid = torch.zeros(len(compositions), length, dtype=torch.bool)
    for b, comp in enumerate(compositions):
        for j, z in enumerate(sorted(comp, key=lambda z: ranks[z - 1])):
            el[b, j], cnt[b, j] = z, comp[z]
        valid[b, : len(comp) + 1] = True
    return el, cnt, valid


class CompositionModel(nn.Module):
    """Autoregressive ``(element, count)`` model of a cell's composition (module docstring)."""

    def __init__(self, cfg: CompositionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, k, c = cfg.hidden, cfg.num_types, max(len(cfg.conditions), 1)
        self.bos = k + 1
        self.element = nn.Embedding(k + 2, h)  # 0 stop, 1..k elements, k+1 start
        self.count = nn.Embedding(cfg.max_atoms + 1, h)
        self.left = nn.Embedding(cfg.max_atoms + 1, h)  # atoms still allowed
        self.cond_scale = nn.Parameter(torch.randn(c, h) * 0.1)
        self.cond_null = nn.Parameter(torch.zeros(c, h))
        self.cond_mlp = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, cfg.layers * h))
        self.gru = nn.GRU(h, h, cfg.layers, batch_first=True,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head_element = nn.Linear(h, k + 1)
        self.head_count = nn.Sequential(nn.Linear(2 * h, h), nn.SiLU(),
                                        nn.Linear(h, cfg.max_atoms + 1))
        self.register_buffer("ranks", torch.tensor((-1,) + element_ranks(k)), persistent=False)

    # ------------------------------------------------------------------ pieces
    def normalise(self, cond: torch.Tensor) -> torch.Tensor:
        """Raw condition values ``(B, C)`` (NaN = not given) to the scale the model reads."""
        if not self.cfg.conditions:
            return torch.full((cond.shape[0], 1), math.nan, device=cond.device)
        mean = torch.tensor(self.cfg.cond_mean, device=cond.device)
        std = torch.tensor(self.cfg.cond_std, device=cond.device).clamp(min=1e-8)
        return (cond.float() - mean) / std

    def initial_state(self, cond: torch.Tensor) -> torch.Tensor:
        """GRU state ``(layers, B, H)`` from normalised conditions ``(B, C)``."""
        given = ~torch.isnan(cond)
        v = torch.nan_to_num(cond)[..., None] * self.cond_scale
        e = torch.where(given[..., None], v, self.cond_null).sum(1)
        h = torch.tanh(self.cond_mlp(e))
        return h.view(-1, self.cfg.layers, self.cfg.hidden).transpose(0, 1).contiguous()

    def _inputs(self, prev_el, prev_cnt, left):
        return self.element(prev_el) + self.count(prev_cnt) + self.left(left)

    def _element_mask(self, prev_el: torch.Tensor, left: torch.Tensor, first: torch.Tensor
                      ) -> torch.Tensor:
        """Allowed next classes (0 = stop): elements ranked above the previous one while atoms
        are left; stop anywhere but first."""
        prev_rank = torch.where(prev_el == self.bos, -1, self.ranks[prev_el.clamp(max=self.bos - 1)])
        ok = (self.ranks[None, 1:] > prev_rank[..., None]) & (left[..., None] > 0)
        return torch.cat([~first[..., None], ok], -1)

    def _count_logits(self, out, el, left):
        logits = self.head_count(torch.cat([out, self.element(el)], -1))
        n = torch.arange(self.cfg.max_atoms + 1, device=out.device)
        bad = (n == 0) | (n > left[..., None])
        return logits.masked_fill(bad, _NEG)

    # ------------------------------------------------------------------ training
    def step_logprobs(self, el: torch.Tensor, cnt: torch.Tensor, valid: torch.Tensor,
                      cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``(B, L)`` of each step's element and of its count (0 where the
        step is padding, or the stop, for counts); ``cond`` normalised."""
        b = el.shape[0]
        prev_el = torch.cat([el.new_full((b, 1), self.bos), el[:, :-1]], 1)
        prev_cnt = torch.cat([cnt.new_zeros(b, 1), cnt[:, :-1]], 1)
        left = (self.cfg.max_atoms - prev_cnt.cumsum(1)).clamp(min=0)
        out, _ = self.gru(self.drop(self._inputs(prev_el, prev_cnt, left)),
                          self.initial_state(cond))
        out = self.drop(out)
        first = torch.zeros_like(valid)
        first[:, 0] = True
        lel = self.head_element(out).masked_fill(~self._element_mask(prev_el, left, first), _NEG)
        lp_el = -F.cross_entropy(lel.transpose(1, 2), el, reduction="none")
        lc = self._count_logits(out, el, left)
        lp_c = -F.cross_entropy(lc.transpose(1, 2), cnt, reduction="none")
        return lp_el * valid, lp_c * (valid & (el > 0))

    def nll(self, el: torch.Tensor, cnt: torch.Tensor, valid: torch.Tensor, cond: torch.Tensor
            ) -> torch.Tensor:
        """Negative log-likelihood of each composition ``(B,)`` (nats); ``cond`` normalised."""
        lp_el, lp_c = self.step_logprobs(el, cnt, valid, cond)
        return -(lp_el.sum(1) + lp_c.sum(1))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, cond: torch.Tensor, temperature: float = 1.0, guidance: float = 1.0,
               allowed: torch.Tensor | None = None, generator: torch.Generator | None = None
               ) -> list[dict[int, int]]:
        """One composition per row of raw conditions ``cond`` ``(B, C)`` (NaN = not given):
        ``{Z: count}``, at least one atom, at most ``max_atoms``.

        ``temperature`` divides the logits; ``guidance`` mixes conditional and unconditional
        logits as classifier-free guidance (1 = conditional only); ``allowed`` ``(num_types,)``
        bool restricts the elements (a chemical system).
        """
        return _sample([self], cond, temperature, guidance, allowed, generator)


class CompositionEnsemble(nn.Module):
    """``cfg.members`` composition models (trained from different seeds) as one model: each
    step's element and count are drawn from the members' averaged distributions, and
    :meth:`nll` scores that averaged model."""

    def __init__(self, cfg: CompositionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.members = nn.ModuleList(CompositionModel(cfg) for _ in range(cfg.members))

    @classmethod
    def of(cls, nets: list[CompositionModel]) -> CompositionEnsemble:
        """The ensemble of trained networks of one shape (their weights copied)."""
        ens = cls(nets[0].cfg.model_copy(update={"members": len(nets)}))
        for member, net in zip(ens.members, nets):
            member.load_state_dict(net.state_dict())
        return ens.eval()

    def normalise(self, cond: torch.Tensor) -> torch.Tensor:
        return self.members[0].normalise(cond)

    def nll(self, el: torch.Tensor, cnt: torch.Tensor, valid: torch.Tensor, cond: torch.Tensor
            ) -> torch.Tensor:
        """Negative log-likelihood ``(B,)`` under the averaged next-step distributions."""
        steps = [m.step_logprobs(el, cnt, valid, cond) for m in self.members]
        log_m = math.log(len(steps))
        lp_el = torch.logsumexp(torch.stack([a for a, _ in steps]), 0) - log_m
        lp_c = torch.logsumexp(torch.stack([c for _, c in steps]), 0) - log_m
        return -(lp_el * valid).sum(1) - (lp_c * (valid & (el > 0))).sum(1)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, temperature: float = 1.0, guidance: float = 1.0,
               allowed: torch.Tensor | None = None, generator: torch.Generator | None = None
               ) -> list[dict[int, int]]:
        """As :meth:`CompositionModel.sample`, from the members' averaged distributions."""
        return _sample(list(self.members), cond, temperature, guidance, allowed, generator)


def _sample(members: list[CompositionModel], cond: torch.Tensor, temperature: float,
            guidance: float, allowed: torch.Tensor | None, generator: torch.Generator | None
            ) -> list[dict[int, int]]:
    """Draw compositions step by step; each step's element, then its count, from the average of
    the members' (guided, tempered) distributions."""
    first_m = members[0]
    was_training = [m.training for m in members]
    for m in members:
        m.eval()
    dev = first_m.head_element.weight.device
    n = cond.shape[0]
    c = first_m.normalise(cond.to(dev))
    guided = guidance != 1.0 and not bool(torch.isnan(c).all())
    if guided:
        c = torch.cat([c, torch.full_like(c, math.nan)])
    hs = [m.initial_state(c) for m in members]
    rows = c.shape[0]
    prev_el = torch.full((rows,), first_m.bos, dtype=torch.long, device=dev)
    prev_cnt = torch.zeros(rows, dtype=torch.long, device=dev)
    left = torch.full((rows,), first_m.cfg.max_atoms, dtype=torch.long, device=dev)
    done = torch.zeros(rows, dtype=torch.bool, device=dev)
    keep = torch.ones(first_m.cfg.num_types + 1, dtype=torch.bool, device=dev)
    if allowed is not None:
        keep[1:] = allowed.to(dev)
    out: list[dict[int, int]] = [{} for _ in range(n)]

    def probs(logits: torch.Tensor) -> torch.Tensor:
        return _probs(_guide(logits, guidance, n) if guided else logits, temperature)

    for step in range(first_m.cfg.num_types + 1):
        outs = []
        for j, m in enumerate(members):
            o, hs[j] = m.gru(m._inputs(prev_el, prev_cnt, left)[:, None], hs[j])
            outs.append(o[:, 0])
        first = torch.full((rows,), step == 0, device=dev)
        mask = first_m._element_mask(prev_el, left, first) & keep
        mask[:, 0] |= ~mask.any(-1)  # nothing allowed is left: stop
        p_el = sum(probs(m.head_element(o).masked_fill(~mask, _NEG))
                   for m, o in zip(members, outs))
        e = torch.multinomial(p_el, 1, generator=generator)[:, 0]
        e_all = torch.cat([e, e]) if guided else e
        p_cnt = sum(probs(m._count_logits(o, e_all, left)) for m, o in zip(members, outs))
        k = torch.multinomial(p_cnt, 1, generator=generator)[:, 0]
        k_all = torch.cat([k, k]) if guided else k
        stop = (e_all == 0) | done
        for i in torch.nonzero(~stop[:n]).flatten().tolist():
            out[i][int(e[i])] = int(k[i])
        done = stop
        prev_el = torch.where(done, prev_el, e_all)
        prev_cnt = torch.where(done, prev_cnt, k_all)
        left = torch.where(done, left, left - k_all)
        if bool(done.all()):
            break
    for m, t in zip(members, was_training):
        m.train(t)
    return out


def _guide(logits: torch.Tensor, guidance: float, n: int) -> torch.Tensor:
    cond, uncond = logits[:n], logits[n:]
    mixed = uncond + guidance * (cond - uncond)
    return mixed.masked_fill(cond <= _NEG / 2, _NEG)


def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits.float() / temperature, -1)


# ---------------------------------------------------------------------- files
class CompositionFileError(Exception):
    """A composition model that cannot be used; the message is one line naming the file."""


def save_composition_model(model: CompositionModel | CompositionEnsemble, folder: str | Path,
                           record: dict[str, Any] | None = None,
                           sampling: dict[str, Any] | None = None,
                           half: bool = False) -> Path:
    """Write ``composition.safetensors`` + ``composition.json`` into ``folder``; ``sampling``:
    the folder's de novo defaults (``{"denovo": "composition" | "joint", "temperature": T}``,
    see :mod:`matgen.generate._compositions`); ``half`` stores the weights as float16 (half the
    file; they are read back into float32)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / COMPOSITION_WEIGHTS
    tmp = weights.with_suffix(".tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, tmp)
    tmp.replace(weights)
    meta = {"config": model.cfg.model_dump(), "sampling": sampling or {}, "record": record or {}}
    if half:
        meta["weights_dtype"] = "float16"
    tmp = folder / (COMPOSITION_META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(folder / COMPOSITION_META)
    return folder


def has_composition_model(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / COMPOSITION_WEIGHTS).is_file() and (folder / COMPOSITION_META).is_file()


def load_composition_model(folder: str | Path, device: torch.device | str = "cpu"
                           ) -> CompositionModel | CompositionEnsemble:
    """The composition model stored in ``folder`` (an ensemble where its config has
    ``members`` > 1).

    Raises:
        CompositionFileError: missing, unreadable or mismatched files (one line).
    """
    folder = Path(folder)
    meta_path, weights = folder / COMPOSITION_META, folder / COMPOSITION_WEIGHTS
    for path in (meta_path, weights):
        if not path.is_file():
            raise CompositionFileError(f"{path}: not found")
    try:
        cfg = CompositionConfig(**json.loads(meta_path.read_text())["config"])
        model = CompositionEnsemble(cfg) if cfg.members > 1 else CompositionModel(cfg)
    except Exception as e:  # noqa: BLE001 - bad JSON or config
        raise CompositionFileError(f"{meta_path}: unusable composition model ({_line(e)})"
                                   ) from None
    try:
        model.load_state_dict(load_file(weights))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise CompositionFileError(f"{weights}: unusable composition model ({_line(e)})"
                                   ) from None
    return model.to(device).eval()


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

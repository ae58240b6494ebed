"""Noise processes, one per field, with a common interface.

Every process implements:
    ``prior(...)``: a sample of the terminal distribution (t = 1);
    ``add_noise(x0, t, ..., generator)``: ``(x_t, target)``, the training target of the denoiser;
    ``loss(pred, target, ...)``: the per-field loss (scalar);
    ``step(x_t, pred, t, s, ..., generator)``: one ancestral reverse step from time t to s < t;
    ``step_deterministic(x_t, pred, t, s, ...)``: a deterministic (ODE / DDIM) reverse step.
Times are tensors broadcast to the field's leading dimension (per atom or per crystal).
"""

from __future__ import annotations

import functools
import math
from typing import Protocol

import torch

from matgen.nn import atom_slots, polar_rotation


def _gen_device(like: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else like.device


def _randn(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Normal noise shaped ``shape`` on ``like``'s device, drawn on the generator's device."""
    dev = _gen_device(like, generator)
    x = torch.randn(shape, generator=generator, device=dev, dtype=like.dtype)
    return x.to(like.device)


def _rand(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform ``[0, 1)`` noise, drawn like :func:`_randn`."""
    dev = _gen_device(like, generator)
    x = torch.rand(shape, generator=generator, device=dev, dtype=like.dtype)
    return x.to(like.device)


def wrap01(x: torch.Tensor) -> torch.Tensor:
    """Wrap into ``[0, 1)`` (guarding the float corner case ``remainder(-tiny, 1) == 1``)."""
    y = torch.remainder(x, 1.0)
    return torch.where(y >= 1.0, torch.zeros_like(y), y)


@functools.lru_cache(maxsize=8)
def _norm_table(sigma_min: float, sigma_max: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``E[score^2]`` on a grid of 513 times (cached per process parameters)."""
    proc = TorusProcess.__new__(TorusProcess)
    proc.sigma_min, proc.sigma_max, proc.k = sigma_min, sigma_max, k
    grid = torch.linspace(0.0, 1.0, 513, dtype=torch.float64)
    return grid, proc._score_norm_quadrature(proc.sigma(grid))


class CoordinatePath(Protocol):
    """What training needs of a fractional-coordinate process (:class:`TorusProcess`, score;
    :class:`matgen.diffusion._flow.TorusFlow`, flow). Their sampler steps differ (a noise
    generator vs an anti-annealing slope) and are called by objective."""

    def prior(self, num: int, like: torch.Tensor, generator=None) -> torch.Tensor: ...

    def add_noise(self, f0: torch.Tensor, t: torch.Tensor, generator=None): ...

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...


class LatticePath(Protocol):
    """What training needs of a lattice process (:class:`LatticeProcess`, score;
    :class:`matgen.diffusion._flow.LatticeFlow`, flow): per-crystal, so the atom counts come
    along."""

    def prior(self, num_atoms: torch.Tensor, like: torch.Tensor, generator=None) -> torch.Tensor: ...

    def add_noise(self, l0: torch.Tensor, t: torch.Tensor, num_atoms: torch.Tensor,
                  generator=None): ...

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...


class TorusProcess:
    """Variance-exploding wrapped-normal diffusion of fractional coordinates on the 3-torus.

    ``f_t = (f_0 + sigma(t) eps) mod 1`` with ``sigma(t) = sigma_min^(1-t) sigma_max^t``.
    The transition density is the wrapped normal
    ``p(d) = sum_k N(d + k; 0, sigma^2)`` (truncated to ``|k| <= K``); its score
    ``d log p / d d`` is the training target, divided by ``sqrt(E[score^2])`` so the target has
    unit variance at every noise level.

    Args:
        sigma_min, sigma_max: noise range.
        wrap_images: K.
    """

    def __init__(self, sigma_min: float = 0.005, sigma_max: float = 0.5, wrap_images: int = 5):
        self.sigma_min, self.sigma_max, self.k = float(sigma_min), float(sigma_max), wrap_images
        self._norm_t, self._norm_v = _norm_table(self.sigma_min, self.sigma_max, wrap_images)
        self._log_norm_on: dict[str, torch.Tensor] = {}

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise level ``(...,)`` at time ``t`` ``(...,)``."""
        return self.sigma_min ** (1 - t) * self.sigma_max**t

    def _images(self, like: torch.Tensor) -> torch.Tensor:
        return torch.arange(-self.k, self.k + 1, device=like.device, dtype=like.dtype)

    def log_density(self, d: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Log wrapped-normal density of displacement ``d`` (any shape) at ``sigma`` (same)."""
        x = d.unsqueeze(-1) + self._images(d)
        s = sigma.unsqueeze(-1)
        return torch.logsumexp(-(x**2) / (2 * s**2), -1) - torch.log(sigma * math.sqrt(2 * math.pi))

    def score(self, d: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Score ``d/dd log p(d)`` of the wrapped normal (same shape as ``d``)."""
        d = d - torch.round(d)  # any representative; the image sum makes it periodic
        x = d.unsqueeze(-1) + self._images(d)
        s2 = (sigma**2).unsqueeze(-1)
        w = torch.softmax(-(x**2) / (2 * s2), -1)
        return -(w * x).sum(-1) / s2.squeeze(-1)

    def _score_norm_quadrature(self, sigma: torch.Tensor) -> torch.Tensor:
        """``E[score^2]`` for each sigma ``(M,)`` by quadrature on a sigma-adapted grid."""
        u = torch.linspace(-1.0, 1.0, 801, dtype=torch.float64)
        half = torch.clamp(8 * sigma, max=0.5).unsqueeze(-1)
        d = u * half
        sg = sigma.unsqueeze(-1).expand_as(d)
        logp = self.log_density(d, sg)
        w = torch.softmax(logp, -1)
        return (w * self.score(d, sg) ** 2).sum(-1)

    def score_norm(self, t: torch.Tensor) -> torch.Tensor:
        """``E[score^2]`` per dimension at time ``t`` (table interpolated in log space)."""
        key = str(t.device)
        table = self._log_norm_on.get(key)
        if table is None:
            table = torch.log(self._norm_v).to(t.device)
            self._log_norm_on[key] = table
        m = table.shape[0] - 1
        tt = t.detach().double().clamp(0, 1) * m
        lo = tt.floor().long().clamp(max=m - 1)
        a = tt - lo
        val = torch.exp((1 - a) * table[lo] + a * table[lo + 1])
        return val.to(t.dtype)

    def prior(self, num: int, like: torch.Tensor, generator=None) -> torch.Tensor:
        """``(num, 3)`` uniform fractional coordinates."""
        return _rand((num, 3), like, generator)

    def add_noise(self, f0: torch.Tensor, t: torch.Tensor, generator=None):
        """Noise ``f0 (N, 3)`` to per-atom times ``t (N,)``; returns ``(f_t, normalised score)``."""
        sigma = self.sigma(t).unsqueeze(-1)
        eps = _randn(f0.shape, f0, generator)
        ft = wrap01(f0 + sigma * eps)
        target = self.score(sigma * eps, sigma.expand_as(eps))
        return ft, target / torch.sqrt(self.score_norm(t)).unsqueeze(-1)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the normalised score."""
        return (pred - target).pow(2).mean()

    def step(self, ft, pred, t, s, generator=None):
        """Reverse-diffusion predictor from ``t`` to ``s`` (per-atom ``(N,)`` times)."""
        sc = pred * torch.sqrt(self.score_norm(t)).unsqueeze(-1)
        st2, ss2 = self.sigma(t) ** 2, self.sigma(s) ** 2
        dv = (st2 - ss2).unsqueeze(-1)
        std = torch.sqrt(ss2 * (st2 - ss2) / st2).unsqueeze(-1)
        return wrap01(ft + dv * sc + std * _randn(ft.shape, ft, generator))

    def step_deterministic(self, ft, pred, t, s):
        """Probability-flow ODE (Euler) step from ``t`` to ``s``."""
        sc = pred * torch.sqrt(self.score_norm(t)).unsqueeze(-1)
        dv = (self.sigma(t) ** 2 - self.sigma(s) ** 2).unsqueeze(-1)
        return wrap01(ft + 0.5 * dv * sc)

    def corrector(self, ft, pred, t, step_scale: float, generator=None):
        """One Langevin step at time ``t`` with step size ``step_scale * sigma(t)^2``."""
        sc = pred * torch.sqrt(self.score_norm(t)).unsqueeze(-1)
        eps = (step_scale * self.sigma(t) ** 2).unsqueeze(-1)
        return wrap01(ft + eps * sc + torch.sqrt(2 * eps) * _randn(ft.shape, ft, generator))


class LatticeProcess:
    """Variance-preserving Gaussian diffusion of the lattice matrix, mean-reverting to a cube.

    With ``c = (N * mean_volume_per_atom)^(1/3)`` (the cube at the data's mean density) and
    ``s = lattice_sigma * c``, the normalised lattice ``X = (L - c Q0) / s`` follows
    ``X_t = sqrt(abar(t)) X_0 + sqrt(1 - abar(t)) eps`` (cosine schedule). ``Q0`` is the
    orthogonal polar factor of ``L0`` (``L0 = S0 Q0`` with ``S0`` symmetric positive), so the
    whole process commutes with rotations of the Cartesian frame: rotating ``L0`` rotates
    ``L_t`` and ``eps``. The prior is ``c I + s eps``, sane cells near a cube of the mean
    density. Because the process is rotation-equivariant and so is the denoiser, sampling
    from ``c I`` instead of ``c Q0`` only fixes the final orientation. The denoiser predicts eps
    minus an analytic :meth:`skip` (the basis-dependent part of the prior pull).

    Args:
        mean_volume_per_atom: Å^3.
        lattice_sigma: prior std in units of ``c``.
        cosine_s: cosine-schedule offset.
        x0_clip: bound on the predicted clean normalised lattice in reverse steps (keeps an
            untrained or poor denoiser from producing exploding cells).
    """

    def __init__(
        self,
        mean_volume_per_atom: float,
        lattice_sigma: float = 0.2,
        cosine_s: float = 0.008,
        x0_clip: float = 25.0,
    ) -> None:
        self.vpa, self.rel, self.cs = float(mean_volume_per_atom), float(lattice_sigma), cosine_s
        self.x0_clip = float(x0_clip)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """Cosine schedule ``abar(t)`` in ``[1e-4, 1]``."""
        f = torch.cos((t + self.cs) / (1 + self.cs) * math.pi / 2) ** 2
        f0 = math.cos(self.cs / (1 + self.cs) * math.pi / 2) ** 2
        return (f / f0).clamp(1e-4, 1.0)

    def scale(self, num_atoms: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Prior cube edge ``c`` ``(B,)`` in Å."""
        return (num_atoms.to(like.dtype) * self.vpa).pow(1.0 / 3.0)

    @staticmethod
    def polar_rotation(lattice: torch.Tensor) -> torch.Tensor:
        """Orthogonal factor Q of ``L = S Q`` (rows convention), ``(B, 3, 3)``."""
        return polar_rotation(lattice)

    def prior(self, num_atoms: torch.Tensor, like: torch.Tensor, generator=None) -> torch.Tensor:
        """``(B, 3, 3)`` prior lattices ``c I + s eps``."""
        c = self.scale(num_atoms, like).view(-1, 1, 1)
        eye = torch.eye(3, device=like.device, dtype=like.dtype)
        return c * (eye + self.rel * _randn((num_atoms.shape[0], 3, 3), like, generator))

    def add_noise(self, l0: torch.Tensor, t: torch.Tensor, num_atoms: torch.Tensor, generator=None):
        """Noise ``l0 (B, 3, 3)`` to times ``t (B,)``.

        Returns:
            ``(L_t, target)`` with ``target = eps - skip(L_t)``, what the network predicts.
        """
        c = self.scale(num_atoms, l0).view(-1, 1, 1)
        mean = c * self.polar_rotation(l0)
        ab = self.alpha_bar(t).view(-1, 1, 1)
        eps = _randn(l0.shape, l0, generator)
        lt = ab.sqrt() * l0 + (1 - ab.sqrt()) * mean + (1 - ab).sqrt() * self.rel * c * eps
        return lt, eps - self.skip(lt, t, num_atoms)

    def skip(self, lt: torch.Tensor, t: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
        """Analytic part of the noise prediction, ``(B, 3, 3)``.

        ``sqrt(1 - abar) (L_t - c Q(L_t)) / s`` with ``Q(L_t)`` the polar rotation of the noisy
        cell: the posterior mean of eps for unit-variance data. It carries the
        basis-dependent pull towards the prior cube, so the (basis-equivariant) network only
        predicts the residual ``eps - skip``; near t = 1 the skip alone is almost exact.
        """
        c = self.scale(num_atoms, lt).view(-1, 1, 1)
        ab = self.alpha_bar(t).view(-1, 1, 1)
        return (1 - ab).sqrt() * (lt - c * self.polar_rotation(lt)) / (self.rel * c)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the predicted noise."""
        return (pred - target).pow(2).mean()

    def _x(self, lt, num_atoms):
        """Normalised lattice in the frame of its own polar rotation, and that frame."""
        c = self.scale(num_atoms, lt).view(-1, 1, 1)
        q = self.polar_rotation(lt)
        return (lt - c * q) / (self.rel * c), c, q

    def _l(self, x, c, q):
        return c * q + self.rel * c * x

    def predict_x0(self, x: torch.Tensor, pred: torch.Tensor, abt: torch.Tensor) -> torch.Tensor:
        """Clean normalised lattice implied by eps ``pred``, clipped to ``[-x0_clip, x0_clip]``."""
        x0 = (x - (1 - abt).sqrt() * pred) / abt.sqrt()
        return x0.clamp(-self.x0_clip, self.x0_clip)

    def step(self, lt, pred, t, s, num_atoms, generator=None):
        """DDPM ancestral step from ``t`` to ``s`` (``(B,)`` times).

        The step is taken in the frame of the current cell's polar rotation ``Q(L_t)``
        (``X = (L_t - c Q(L_t)) / s``), the frame in which a rotation-equivariant denoiser's
        noise prediction lives: the rotational part of the noise is unpredictable from
        ``L_t`` (a gauge), so measuring ``X`` from a fixed frame would amplify it by
        ``1 / sqrt(abar)`` in the clean-lattice estimate.

        ``pred`` is the network's residual; the :meth:`skip` is added here.
        """
        pred = pred + self.skip(lt, t, num_atoms)
        x, c, q = self._x(lt, num_atoms)
        abt, abs_ = self.alpha_bar(t).view(-1, 1, 1), self.alpha_bar(s).view(-1, 1, 1)
        a = abt / abs_
        beta = 1 - a
        x0 = self.predict_x0(x, pred, abt)
        mean = (abs_.sqrt() * beta * x0 + a.sqrt() * (1 - abs_) * x) / (1 - abt)
        var = beta * (1 - abs_) / (1 - abt)
        x = mean + var.sqrt() * _randn(x.shape, x, generator)
        return self._l(x, c, q)

    def step_deterministic(self, lt, pred, t, s, num_atoms):
        """DDIM (eta = 0) step from ``t`` to ``s`` (``pred`` is the residual, as in :meth:`step`)."""
        pred = pred + self.skip(lt, t, num_atoms)
        x, c, q = self._x(lt, num_atoms)
        abt, abs_ = self.alpha_bar(t).view(-1, 1, 1), self.alpha_bar(s).view(-1, 1, 1)
        x0 = self.predict_x0(x, pred, abt)
        eps = (x - abt.sqrt() * x0) / (1 - abt).sqrt()
        x = abs_.sqrt() * x0 + (1 - abs_).sqrt() * eps
        return self._l(x, c, q)


class MaskedTypeProcess:
    """Absorbing-state (masked) discrete diffusion of atom types.

    Each atom's type is replaced by the mask token (``Z = 0``) independently with probability
    ``t`` (so ``alpha(t) = 1 - t`` of the types survive). The denoiser predicts logits over the
    ``K`` element classes (class k is ``Z = k + 1``); the loss is the cross-entropy on masked
    atoms. Reverse step ``t -> s``: each masked atom is revealed with probability
    ``(t - s) / t``, drawn from the (optionally masked) predicted distribution.
    """

    MASK = 0

    def prior(self, num: int, device=None) -> torch.Tensor:
        """``(num,)`` all-masked types."""
        return torch.zeros(num, dtype=torch.long, device=device)

    def add_noise(self, z0: torch.Tensor, t: torch.Tensor, generator=None):
        """Mask ``z0 (N,)`` at per-atom times ``t (N,)``; returns ``(z_t, masked (N,) bool)``."""
        masked = _rand(z0.shape, t, generator) < t
        return torch.where(masked, torch.zeros_like(z0), z0), masked

    def loss(self, logits: torch.Tensor, z0: torch.Tensor, masked: torch.Tensor,
             crystals: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Cross-entropy over masked atoms (0 if none is masked).

        Without ``crystals`` the mean over all masked atoms of the batch, so a crystal weighs
        in proportion to its masked atoms (about ``t`` of them). With ``crystals = (bidx (N,),
        num_atoms (B,))`` (as :meth:`step` takes them) the ELBO weighting: each crystal's masked atoms are weighted by
        ``N_i / m_i`` (its atoms over its masked atoms, the per-crystal estimate of MDLM's
        ``1 / t``; Sahoo et al. 2024) and the sum divided by the batch's atoms, so nearly
        unmasked crystals, whose few masked atoms decide how a composition is completed, weigh
        as much as nearly masked ones."""
        ce = torch.nn.functional.cross_entropy(logits, z0 - 1, reduction="none")
        if crystals is None:
            return (ce * masked).sum() / masked.sum().clamp(min=1)
        bidx, num_atoms = crystals
        m = torch.zeros(num_atoms.shape[0], device=ce.device, dtype=ce.dtype)
        m = m.index_add(0, bidx, masked.to(ce.dtype))
        w = (num_atoms.to(ce.dtype) / m.clamp(min=1))[bidx]
        return (ce * masked * w).sum() / num_atoms.sum().clamp(min=1)

    @staticmethod
    def masked_logits(logits: torch.Tensor, type_mask: torch.Tensor | None) -> torch.Tensor:
        """Set logits of disallowed classes (``type_mask (K,)`` False) to -inf."""
        if type_mask is None:
            return logits
        return logits.masked_fill(~type_mask.to(logits.device), float("-inf"))

    def step(self, zt, logits, t, s, generator=None, type_mask=None, temperature: float = 1.0,
             crystals: tuple[torch.Tensor, torch.Tensor] | None = None, remask: float = 0.0):
        """Reveal masked atoms between ``t`` and ``s`` (per-atom ``(N,)`` times), each drawn
        from ``softmax(logits / temperature)``.

        Which atoms: each masked atom independently with probability ``(t - s) / t``; or, with
        ``crystals = (bidx (N,), num_atoms (B,))`` (atoms ordered by crystal), as many per
        crystal as that draw gives,
        but the ones whose drawn type is the most probable under the prediction (confidence
        order, as MaskGIT unmasks; Chang et al. 2022). The same random numbers are used
        either way, so only the choice of positions differs.

        ``remask = eta > 0``: revealed atoms are masked again with probability
        ``sigma = min(eta (t - s), s / (1 - t))`` and masked ones revealed with probability
        ``(t - s + sigma (1 - t)) / t``, which keeps a share ``t`` of atoms masked at time ``t``
        as in training, and lets a type that no longer fits the rest be drawn again (ReMDM,
        Wang et al. 2025, with its "cap" schedule in units of time; none at the last step)."""
        p = torch.softmax(self.masked_logits(logits, type_mask).float() / temperature, -1)
        u = _rand(zt.shape, t, generator)
        masked = zt == self.MASK
        sigma = torch.zeros_like(t)
        if remask > 0:
            sigma = torch.minimum(remask * (t - s), s / (1 - t).clamp(min=1e-12)).clamp(0, 1)
        reveal = masked & (u < ((t - s + sigma * (1 - t)) / t.clamp(min=1e-12)))
        dev = _gen_device(p, generator)
        draw = torch.multinomial(p.to(dev), 1, generator=generator).squeeze(-1).to(zt.device) + 1
        if crystals is not None:
            conf = p.gather(-1, (draw - 1).unsqueeze(-1)).squeeze(-1)
            reveal = _most_confident(reveal, masked, conf, *crystals)
        again = ~masked & (u < sigma)  # u is free here: these atoms were not masked
        return torch.where(again, torch.zeros_like(zt), torch.where(reveal, draw, zt))


def _most_confident(reveal: torch.Tensor, masked: torch.Tensor, conf: torch.Tensor,
                    bidx: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
    """Per crystal, the ``reveal.sum()`` masked atoms of highest ``conf`` (atoms ordered by
    crystal ``bidx (N,)``, ``num_atoms (B,)`` of each); all ``(N,)``."""
    count = torch.zeros(num_atoms.shape[0], dtype=torch.long, device=reveal.device)
    count.index_add_(0, bidx, reveal.long())
    score = torch.where(masked, conf, torch.full_like(conf, -1.0))
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(bidx[order], stable=True)]  # by crystal, then by score
    rank = torch.empty_like(bidx)
    rank[order] = atom_slots(bidx[order], num_atoms)  # place in its crystal's sorted run
    return masked & (rank < count[bidx])

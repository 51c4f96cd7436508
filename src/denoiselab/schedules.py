"""Noise schedules for the variance-preserving (VP) diffusion process.

Glossary (Ho et al. 2020, sec. 2; Kingma et al. 2021 for the SNR view):

| symbol        | meaning                                                        |
| ------------- | -------------------------------------------------------------- |
| ``T``         | number of discrete diffusion steps; ``t`` is an index 0..T-1   |
| ``beta``      | per-step noise variance beta_t in (0, 1)                       |
| ``alpha``     | 1 - beta_t                                                     |
| ``alpha_bar`` | cumulative product prod_{s<=t} alpha_s (signal variance)       |
| ``sigma``     | VE noise level sqrt((1 - alpha_bar) / alpha_bar) (Karras 2022) |
| ``log_snr``   | log(alpha_bar / (1 - alpha_bar)) = -2 log sigma                |

Everything is float64: alpha_bar is a product of up to thousands of factors and the
posterior coefficients divide by (1 - alpha_bar), which float32 resolves poorly near t = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .errors import DenoiselabError

F64 = torch.float64


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. 2020, sec. 4: betas linear from 1e-4 to 0.02 for T = 1000."""
    return torch.linspace(beta_start, beta_end, T, dtype=F64)


def quadratic_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Betas linear in sqrt(beta) (the "scaled linear" schedule of latent diffusion)."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=F64) ** 2


def sigmoid_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Betas following a sigmoid from beta_start to beta_end (GeoDiff, Xu et al. 2022)."""
    s = torch.sigmoid(torch.linspace(-6.0, 6.0, T, dtype=F64))
    return s * (beta_end - beta_start) + beta_start


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2).

    betas = 1 - alpha_bar(t+1)/alpha_bar(t), clipped at max_beta to avoid the singularity at t = T.
    """
    steps = torch.arange(T + 1, dtype=F64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1 - f[1:] / f[:-1]
    return betas.clamp(max=max_beta)


SCHEDULES: dict[str, Callable[..., torch.Tensor]] = {
    "linear": linear_betas,
    "cosine": cosine_betas,
    "quadratic": quadratic_betas,
    "sigmoid": sigmoid_betas,
}


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete VP schedule. Build with :func:`make_schedule` or directly from betas."""

    betas: torch.Tensor

    def __post_init__(self) -> None:
        b = torch.as_tensor(self.betas, dtype=F64).flatten().clone()
        if b.numel() < 1:
            raise DenoiselabError("noise schedule is empty: give at least one beta")
        if not torch.isfinite(b).all() or (b <= 0).any() or (b >= 1).any():
            raise DenoiselabError(
                f"betas must lie strictly inside (0, 1); got min {b.min().item():.3g}, "
                f"max {b.max().item():.3g}: rescale them"
            )
        object.__setattr__(self, "betas", b)
        alpha_bar = torch.cumprod(1 - b, 0)
        if (alpha_bar[1:] >= alpha_bar[:-1]).any() or alpha_bar[-1] <= 0:
            raise DenoiselabError("alpha_bar must be strictly decreasing and positive")
        object.__setattr__(self, "alpha_bar", alpha_bar)
        # log-SNR with t = -1 prepended (log-SNR 80: alpha_bar = 1 in float64), for alpha_bar_at.
        log_snr = torch.log(alpha_bar) - torch.log1p(-alpha_bar)
        object.__setattr__(self, "_log_snr_ext", torch.cat([torch.full((1,), 80.0, dtype=F64), log_snr]))

    # -- derived quantities (all float64, index t = 0..T-1) --
    @property
    def T(self) -> int:
        return self.betas.numel()

    @property
    def alphas(self) -> torch.Tensor:
        return 1 - self.betas

    @property
    def alpha_bar_prev(self) -> torch.Tensor:
        """alpha_bar_{t-1}, with alpha_bar_{-1} = 1 (no noise before the first step)."""
        return torch.cat([torch.ones(1, dtype=F64), self.alpha_bar[:-1]])

    @property
    def sigmas(self) -> torch.Tensor:
        """VE noise level of each step: x_t / sqrt(alpha_bar) = x_0 + sigma * eps."""
        return ((1 - self.alpha_bar) / self.alpha_bar).sqrt()

    @property
    def log_snr(self) -> torch.Tensor:
        return self._log_snr_ext[1:]

    @property
    def beta_tilde(self) -> torch.Tensor:
        """Posterior variance, Ho et al. 2020 eq. 7: (1 - abar_{t-1}) / (1 - abar_t) * beta_t."""
        return (1 - self.alpha_bar_prev) / (1 - self.alpha_bar) * self.betas

    def alpha_bar_at(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_bar at integer or fractional t (fractional: linear in log-SNR), t = -1 -> 1."""
        t = torch.as_tensor(t, dtype=F64, device="cpu")  # the schedule's float64 tables live on the CPU
        ext = self._log_snr_ext
        u = (t + 1).clamp(0, self.T)
        lo = u.floor().long().clamp(max=self.T - 1)
        w = u - lo
        val = ext[lo] * (1 - w) + ext[(lo + 1).clamp(max=self.T)] * w
        return torch.sigmoid(val)

    def t_from_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional t whose sigma equals the given one (interpolating log sigma, as k-diffusion)."""
        log_sigma = torch.as_tensor(sigma, dtype=F64, device="cpu").log()
        log_sigmas = self.sigmas.log()
        idx = torch.searchsorted(log_sigmas, log_sigma.reshape(-1)).clamp(1, self.T - 1)
        lo, hi = log_sigmas[idx - 1], log_sigmas[idx]
        w = ((log_sigma.reshape(-1) - lo) / (hi - lo)).clamp(0, 1)
        return ((idx - 1) + w).reshape(log_sigma.shape)

    def to_dict(self) -> dict:
        return {"betas": self.betas.tolist()}


def make_schedule(name: str, T: int = 1000, betas: Sequence[float] | None = None, **kwargs) -> NoiseSchedule:
    """Build a named schedule (``linear``, ``cosine``, ``quadratic``, ``sigmoid``) or ``custom`` from betas."""
    if name == "custom":
        if betas is None:
            raise DenoiselabError("schedule 'custom' needs betas: pass betas=[...]")
        return NoiseSchedule(torch.as_tensor(list(betas), dtype=F64))
    if name not in SCHEDULES:
        raise DenoiselabError(f"unknown schedule {name!r}: choose one of {', '.join(sorted(SCHEDULES))} or 'custom'")
    if T < 1:
        raise DenoiselabError(f"T must be a positive number of steps, got {T}")
    return NoiseSchedule(SCHEDULES[name](T, **kwargs))


def respace(schedule: NoiseSchedule, kept: Sequence[int] | torch.Tensor) -> NoiseSchedule:
    """The schedule of a trained DDPM restricted to the steps ``kept`` (Nichol & Dhariwal 2021, sec. 4).

    With S the kept steps in increasing order, beta^S_i = 1 - alpha_bar_{S_i} / alpha_bar_{S_{i-1}}
    (alpha_bar before the first step is 1), so the respaced schedule's alpha_bar at step i equals
    the original alpha_bar at step S_i; step i of the new schedule is network time S_i.
    """
    idx = torch.as_tensor(kept, dtype=torch.int64).flatten()
    idx = torch.unique(idx)  # sorted, no repeats
    if idx.numel() < 1 or idx[0] < 0 or idx[-1] >= schedule.T:
        raise DenoiselabError(f"kept steps must be indices in [0, {schedule.T - 1}], got {kept!r}")
    ab = schedule.alpha_bar[idx]
    ab_prev = torch.cat([torch.ones(1, dtype=F64), ab[:-1]])
    return NoiseSchedule(1 - ab / ab_prev)

"""Ancestral sampling (Ho et al. 2020, Algorithm 2) and DDIM (Song et al. 2021).

Both step from index t to an earlier index s along a grid (s = -1 is clean data), so they
work on any respaced grid (Nichol & Dhariwal 2021, sec. 4).
"""

from __future__ import annotations

import torch

from ..process import posterior_coefs
from .common import Callback, Noise, bcast, randn

VARIANCES = ("beta_tilde", "beta")


def _pairs(timesteps: torch.Tensor):
    ts = [int(t) for t in timesteps]
    return list(zip(ts, ts[1:] + [-1]))


@torch.no_grad()
def sample_ddpm(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, *, noise: Noise = None, cond=None,
                callback: Callback = None, variance: str = "beta_tilde") -> torch.Tensor:
    """Ho et al. 2020, Algorithm 2, with the posterior of eqs. 6-7 between grid points t -> s.

    variance "beta_tilde": sigma^2 = (1 - abar_s)/(1 - abar_t) beta_{t|s} (the true posterior);
    variance "beta": sigma^2 = beta_{t|s} (the upper bound; Ho et al. sec. 3.2 found both similar).
    No noise is added on the last step.
    """
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    x = x_T
    for i, (t, s) in enumerate(_pairs(timesteps)):
        x0_hat, _ = denoiser(x, torch.full((x.shape[0],), float(t)), cond)
        c0, ct, var, beta_ts = posterior_coefs(denoiser.schedule, torch.tensor(float(t)), torch.tensor(float(s)))
        # Posterior mean, Ho et al. 2020 eq. 7.
        x_next = bcast(c0, x) * x0_hat + bcast(ct, x) * x
        if s >= 0:
            std = (var if variance == "beta_tilde" else beta_ts).sqrt()
            x_next = x_next + bcast(std, x) * randn(noise, i + 1, x)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0_hat": x0_hat, "x_next": x_next})
        x = x_next
    return x


@torch.no_grad()
def sample_ddim(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, *, noise: Noise = None, cond=None,
                callback: Callback = None, eta: float = 0.0) -> torch.Tensor:
    """Song et al. 2021 (DDIM), eq. 12 with sigma_t(eta) of eq. 16.

    x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,
    sigma^2 = eta^2 (1 - abar_s)/(1 - abar_t) (1 - abar_t/abar_s). eta = 1 is the DDPM posterior.
    """
    sched = denoiser.schedule
    x = x_T
    for i, (t, s) in enumerate(_pairs(timesteps)):
        x0_hat, eps_hat = denoiser(x, torch.full((x.shape[0],), float(t)), cond)
        ab_t = sched.alpha_bar_at(torch.tensor(float(t)))
        ab_s = sched.alpha_bar_at(torch.tensor(float(s)))
        var = eta**2 * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
        # DDIM update, eq. 12.
        x_next = bcast(ab_s.sqrt(), x) * x0_hat + bcast((1 - ab_s - var).clamp(min=0).sqrt(), x) * eps_hat
        if eta > 0 and s >= 0:
            x_next = x_next + bcast(var.sqrt(), x) * randn(noise, i + 1, x)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0_hat": x0_hat, "x_next": x_next})
        x = x_next
    return x

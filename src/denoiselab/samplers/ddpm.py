"""Ancestral sampling (Ho et al. 2020, Algorithm 2) and DDIM (Song et al. 2021).

Both step from index t to an earlier index s along a grid (s = -1 is clean data), so they
work on any respaced grid (Nichol & Dhariwal 2021, sec. 4).
"""

from __future__ import annotations

import torch

from ..errors import DenoiselabError
from ..process import posterior_coefs
from .common import Callback, Noise, bcast, grid_pairs, randn, report, scales_at, tvec

VARIANCES = ("beta_tilde", "beta", "learned_range")


def _pairs(timesteps: torch.Tensor):
    """(t, s) along the grid, s = -1 (clean data) last; t may be fractional."""
    return [(t, -1 if s is None else s) for t, s in grid_pairs(timesteps)]


@torch.no_grad()
def sample_ddpm(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, *, noise: Noise = None, cond=None,
                callback: Callback = None, variance: str | None = None) -> torch.Tensor:
    """Ho et al. 2020, Algorithm 2, with the posterior of eqs. 6-7 between grid points t -> s.

    variance "beta_tilde": sigma^2 = (1 - abar_s)/(1 - abar_t) beta_{t|s} (the true posterior);
    variance "beta": sigma^2 = beta_{t|s} (the upper bound; Ho et al. sec. 3.2 found both similar);
    variance "learned_range": the network's v interpolates the two in the log domain (Nichol &
    Dhariwal 2021, eq. 15), the default for a network that predicts it (IF stage I).
    No noise is added on the last step.
    """
    if variance is None:
        variance = "learned_range" if getattr(denoiser, "variance_output", None) else "beta_tilde"
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    if denoiser.schedule is None:
        raise DenoiselabError("sampler 'ddpm' needs a VP model with a beta schedule: use euler-ancestral or ddim")
    x = x_T
    for i, (t, s) in enumerate(_pairs(timesteps)):
        x0_hat, _ = denoiser(x, tvec(t, x), cond)
        c0, ct, var, beta_ts = posterior_coefs(denoiser.schedule, torch.tensor(float(t)), torch.tensor(float(s)))
        # Posterior mean, Ho et al. 2020 eq. 7.
        x_next = bcast(c0, x) * x0_hat + bcast(ct, x) * x
        if s >= 0:
            if variance == "learned_range":
                std = _learned_std(denoiser, x, t, cond, var, beta_ts)
            else:
                std = bcast((var if variance == "beta_tilde" else beta_ts).sqrt(), x)
            x_next = x_next + std * randn(noise, i + 1, x)
        report(callback, i, t, x, x0_hat, x_next)
        x = x_next
    return x


def _learned_std(denoiser, x: torch.Tensor, t, cond, var: torch.Tensor, beta_ts: torch.Tensor) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 15: Sigma = exp(f log beta + (1 - f) log beta_tilde), f = (v + 1) / 2.
    beta_tilde is floored at 1e-20: it is 0 on the step to t = 0, whose log would be -inf."""
    frac = (denoiser.learned_variance(x, tvec(t, x), cond).to(x.dtype) + 1) / 2
    log_var = frac * beta_ts.log().item() + (1 - frac) * var.clamp(min=1e-20).log().item()
    return (0.5 * log_var).exp()


@torch.no_grad()
def sample_ddim(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, *, noise: Noise = None, cond=None,
                callback: Callback = None, eta: float = 0.0, clipped_eps: bool = True) -> torch.Tensor:
    """Song et al. 2021 (DDIM), eq. 12 with sigma_t(eta) of eq. 16.

    x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,
    sigma^2 = eta^2 (1 - abar_s)/(1 - abar_t) (1 - abar_t/abar_s). eta = 1 is the DDPM posterior.
    Written for any process x_t = a_t x0 + s_t eps (VP: a^2 = abar; flows: a = tau, s = 1 - tau):
    x_s = a_s x0_hat + sqrt(s_s^2 - sigma^2) eps_hat + sigma z with
    sigma^2 = eta^2 s_s^2 (1 - (sigma_s / sigma_t)^2), which is eq. 16 when a^2 + s^2 = 1.

    ``clipped_eps``: with an x0 clip, eps_hat is the one recomputed from the clipped x0_hat (the
    pair stays consistent); False keeps the network's own eps_hat beside the clipped x0_hat, as
    diffusers' DDIMScheduler does by default (``use_clipped_model_output=False``).
    """
    x = x_T
    for i, (t, s) in enumerate(grid_pairs(timesteps)):
        if clipped_eps:
            x0_hat, eps_hat = denoiser(x, tvec(t, x), cond)
        else:
            x0_hat, eps_hat = denoiser.unclipped(x, tvec(t, x), cond)
            x0_hat = denoiser.clip_pair(x, tvec(t, x), x0_hat, eps_hat)[0]
        a_t, s_t = scales_at(denoiser, t)
        a_s, s_s = scales_at(denoiser, s)
        ratio = (s_s * a_t) / (a_s * s_t)  # sigma_s / sigma_t; 0 from pure noise (a_t = 0)
        var = eta**2 * s_s**2 * max(0.0, 1 - ratio**2)
        # DDIM update, eq. 12.
        x_next = a_s * x0_hat + max(0.0, s_s**2 - var) ** 0.5 * eps_hat
        if var > 0:
            x_next = x_next + var**0.5 * randn(noise, i + 1, x)
        report(callback, i, t, x, x0_hat, x_next)
        x = x_next
    return x

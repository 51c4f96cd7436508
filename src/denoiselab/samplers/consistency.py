"""Consistency sampling (Song et al. 2023, Algorithm 1) and the one ODE step a consistency
distillation takes with its teacher.

Glossary (Song et al. 2023, sec. 3-4):

| symbol         | meaning                                                                  |
| -------------- | ------------------------------------------------------------------------ |
| ``f``          | the consistency function: x_t -> the clean end of its ODE trajectory      |
| ``tau_n``      | the sampler's noise levels, highest first (the time grid)                 |
| ``sigma_min``  | the boundary, where f(x, sigma_min) = x (``ConsistencyDenoiser``)         |
| ``a``, ``s``   | signal and noise scales of the model's process at time t                  |
"""

from __future__ import annotations

import math

import torch

from ..errors import DenoiselabError
from .common import Callback, Noise, grid_pairs, randn, report, scales_at, sigma_of, tvec

SOLVERS = ("heun", "euler")


@torch.no_grad()
def sample_consistency(denoiser, x: torch.Tensor, timesteps, *, noise: Noise = None, cond=None,
                       callback: Callback = None) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1): x0 = f(x, tau_1); then for
    each later level tau_n, x = a_n (x0 + sqrt(sigma_n^2 - sigma_min^2) z) and x0 = f(x, tau_n).
    One step is one evaluation. ``sigma_min`` is the denoiser's boundary (``sigma_boundary``; 0
    for a model that is not a consistency student, which then takes ancestral x0 jumps)."""
    sigma_min = float(getattr(denoiser, "sigma_boundary", 0.0))
    # f is defined on [sigma_min, sigma_max] (Algorithm 1's levels lie above epsilon): a grid level
    # below the boundary is taken at the boundary, where f(x, sigma_min) = x / a exactly.
    t_floor = float(denoiser.t_from_sigma(torch.tensor(sigma_min, dtype=torch.float64))) if sigma_min > 0 else None
    pairs = grid_pairs(timesteps)
    if t_floor is not None:
        pairs = [(t if sigma_of(*scales_at(denoiser, t)) >= sigma_min else t_floor,
                  t_next if t_next is None or sigma_of(*scales_at(denoiser, t_next)) >= sigma_min else t_floor)
                 for t, t_next in pairs]
    for i, (t, t_next) in enumerate(pairs):
        x0_hat, _ = denoiser(x, tvec(t, x), cond)
        if t_next is None:
            x_next = x0_hat
        else:
            a, s = scales_at(denoiser, t_next)
            sigma = s / a
            # Re-noise the clean estimate to the next level, as the forward process would.
            x_next = a * (x0_hat + math.sqrt(max(sigma * sigma - sigma_min * sigma_min, 0.0)) * randn(noise, i + 1, x))
        report(callback, i, t, x, x0_hat, x_next)
        x = x_next
    return x


def ode_step(denoiser, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, cond=None,
             solver: str = "heun") -> torch.Tensor:
    """One step of the probability-flow ODE from t to t_next, each a tensor with a time per sample.

    ``euler`` is the DDIM step x' = a' x0_hat + s' eps_hat (Song et al. 2021, eq. 12); ``heun``
    adds the trapezoid correction of Karras et al. 2022, Algorithm 1, in the ``flow`` frame that
    ``samplers.karras`` integrates in (z = x / (a + s), r = a / (a + s), dz/dr = x0_hat - eps_hat),
    so the step equals one step of ``sample_heun`` on the same two times."""
    if solver not in SOLVERS:
        raise DenoiselabError(f"unknown teacher solver {solver!r}: choose one of {', '.join(SOLVERS)}")
    a, s = denoiser.scales(t, x)
    a2, s2 = denoiser.scales(t_next, x)
    x0, eps = denoiser(x, t, cond)
    euler = a2 * x0 + s2 * eps
    if solver == "euler":
        return euler
    # 2nd-order correction: the slope at the Euler point, averaged with the first.
    x0b, epsb = denoiser(euler, t_next, cond)
    r, r2 = a / (a + s), a2 / (a2 + s2)
    z2 = x / (a + s) + (r2 - r) * ((x0 - eps) + (x0b - epsb)) / 2
    return z2 * (a2 + s2)

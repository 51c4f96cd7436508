"""DDIM inversion: run the deterministic DDIM ODE (eta = 0) from data towards noise, so that
decoding the result with ``sample_ddim`` on the same grid gives the input back. Edits (prompt
or class swaps, interpolation between encoded points) start from the encoded x_T.

Glossary: ``x0`` the data to encode, ``timesteps`` the decoding grid (noise first, as every
sampler takes it), ``(a, s)`` the process scales, eps_hat the denoiser's noise estimate.

DDIM decodes x_t -> x_s by x_s = a_s x0_hat + s_s eps_hat with eps_hat = eps_hat(x_t, t)
(Song et al. 2021, eq. 12, eta = 0). Solving that for x_t gives
  x_t = (a_t / a_s) (x_s - s_s eps_hat) + s_t eps_hat,
which needs eps_hat at the unknown x_t. The usual inversion (Song et al. 2021, sec. 4.3 and 5.4;
Mokady et al. 2023) takes eps_hat(x_s, t); ``fixed_point_iters`` > 0 then iterates the equation
at x_t (Pan et al. 2023, "accelerated iterative diffusion inversion"), which makes decoding
reproduce the input up to the fixed point's convergence.
"""

from __future__ import annotations

import torch

from .common import Callback, grid_pairs, scales_at, tvec


@torch.no_grad()
def ddim_invert(denoiser, x0: torch.Tensor, timesteps: torch.Tensor, *, cond=None, callback: Callback = None,
                fixed_point_iters: int = 0) -> torch.Tensor:
    """Encode clean data x0 to x_T along the decoding grid ``timesteps`` walked backwards."""
    steps = [(t_next, t) for t, t_next in grid_pairs(timesteps)][::-1]  # (s, t): from s (cleaner) up to t
    x = x0
    for i, (s, t) in enumerate(steps):
        a_s, s_s = scales_at(denoiser, s)
        a_t, s_t = scales_at(denoiser, t)
        x_t = x
        for _ in range(1 + fixed_point_iters):
            _, eps_hat = denoiser(x_t, tvec(t, x), cond)
            # Inverse DDIM step: x_t = (a_t / a_s)(x_s - s_s eps_hat) + s_t eps_hat.
            x_t = (a_t / a_s) * (x - s_s * eps_hat) + s_t * eps_hat
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x_next": x_t})
        x = x_t
    return x

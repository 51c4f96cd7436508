"""Samplers: plain functions ``sampler(denoiser, x_T, timesteps, *, noise, cond, callback, **opts)``.

The time grid is built outside (``timesteps.py``) and passed in; ``callback`` receives a dict
with the step index ``i``, the step ``t``, the current ``x``, ``x0_hat`` and ``x_next``.
"""

from .common import initial_noise, randn
from .ddpm import sample_ddim, sample_ddpm
from .timesteps import SPACINGS, discrete_timesteps

SAMPLERS = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
}

__all__ = ["SAMPLERS", "SPACINGS", "discrete_timesteps", "initial_noise", "randn", "sample_ddim", "sample_ddpm"]

"""Samplers: plain functions ``sampler(denoiser, x_T, timesteps, *, noise, cond, callback, **opts)``.

The time grid is built outside (``timesteps.py``) and passed in; ``callback`` receives a dict
with the step index ``i``, the step ``t``, the current ``x``, ``x0_hat`` and ``x_next``.
"""

from .common import initial_noise, randn
from .ddpm import sample_ddim, sample_ddpm
from .dpm_solver import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_3m
from .grids import GRIDS, make_grid
from .inversion import ddim_invert
from .karras import sample_euler, sample_euler_ancestral, sample_heun
from .timesteps import SPACINGS, discrete_timesteps

SAMPLERS = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "heun": sample_heun,
    "euler-ancestral": sample_euler_ancestral,
    "dpmpp-2m": sample_dpmpp_2m,
    "dpmpp-3m": sample_dpmpp_3m,
    "dpmpp-2m-sde": sample_dpmpp_2m_sde,
}

__all__ = ["GRIDS", "SAMPLERS", "SPACINGS", "ddim_invert", "discrete_timesteps", "initial_noise", "make_grid", "randn",
           "sample_ddim", "sample_ddpm", "sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_dpmpp_3m", "sample_euler",
           "sample_euler_ancestral", "sample_heun"]

"""Samplers: plain functions ``sampler(denoiser, x_T, timesteps, *, noise, cond, callback, **opts)``.

The time grid is built outside (``timesteps.py``) and passed in; ``callback`` receives a dict
with the step index ``i``, the step ``t``, the current ``x``, ``x0_hat`` and ``x_next``.
"""

import inspect
from typing import Callable

from ..errors import DenoiselabError
from .common import initial_noise, randn
from .consistency import ode_step, sample_consistency
from .ddpm import sample_ddim, sample_ddpm
from .dpm_solver import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_3m, sample_dpmpp_3m_sde
from .grids import GRIDS, time_grid
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
    "dpmpp-3m-sde": sample_dpmpp_3m_sde,
    "consistency": sample_consistency,
}


def get_sampler(name: str) -> Callable:
    """The sampler registered as ``name``: the one place that refuses an unknown name."""
    if name not in SAMPLERS:
        raise DenoiselabError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


# Solver steps a sampler takes when named without --steps (and it is not the run's own stored
# sampler, whose stored steps win): ancestral DDPM runs every trained step (Ho et al. 2020);
# DDIM, Euler and Euler ancestral the usual 50 (Song et al. 2021); Heun 25, i.e. 49 NFE
# (Karras et al. 2022 use 18 steps for CIFAR-10); DPM-Solver++ 20 (Lu et al. 2022 report
# near-converged samples at 15-20 steps); consistency 4, the best of 1, 2 and 4 on the MNIST
# students (docs/results/distill.md).
DEFAULT_STEPS = {
    "ddim": 50,
    "euler": 50,
    "heun": 25,
    "euler-ancestral": 50,
    "dpmpp-2m": 20,
    "dpmpp-3m": 20,
    "dpmpp-2m-sde": 20,
    "dpmpp-3m-sde": 20,
    "consistency": 4,
}


def takes_option(sampler: str, option: str) -> bool:
    """Whether the named sampler has the keyword option (e.g. eta): the one place that says so."""
    return option in inspect.signature(get_sampler(sampler)).parameters


# Samplers that draw fresh noise at every step whatever their options (consistency sampling
# re-noises between its steps).
ALWAYS_STOCHASTIC = ("ddpm", "consistency")
# Stochastic samplers whose first step still maps x_T to a clean sample deterministically
# (consistency sampling: x0 = f(x_T)), so a mismatched start is carried into every sample as an
# ODE solver carries it; they start from the data's moments too (docs/results/distill.md, "Where
# sampling starts").
FIRST_STEP_DETERMINISTIC = ("consistency",)


def is_deterministic(sampler: str, opts: dict) -> bool:
    """Whether ``sampler`` with ``opts`` is an ODE solver (no fresh noise after x_T): not ancestral
    DDPM, and every noise option (eta, s_churn, eta_low where eta_switch is set) at 0, given or by
    the sampler's own default."""
    if sampler in ALWAYS_STOCHASTIC:
        return False
    params = inspect.signature(get_sampler(sampler)).parameters

    def value(option: str) -> float:
        return float(opts.get(option, params[option].default)) if option in params else 0.0

    if value("eta") > 0 or value("s_churn") > 0:
        return False
    return not (value("eta_switch") > 0 and value("eta_low") > 0)


def carries_start(sampler: str, opts: dict) -> bool:
    """Whether ``sampler`` carries its x_T into its samples rather than forgetting it: an ODE
    solver (``is_deterministic``), or a sampler whose first step is a deterministic map to clean
    data (``FIRST_STEP_DETERMINISTIC``). Such samplers start from the data's moments under
    ``--start auto`` (``runs.plan.start_moments``)."""
    return sampler in FIRST_STEP_DETERMINISTIC or is_deterministic(sampler, opts)


def default_steps(sampler: str, denoiser) -> int:
    """Steps for ``sampler`` when none are given (see DEFAULT_STEPS); ddpm takes the model's T."""
    if sampler == "ddpm" and denoiser.schedule is not None:
        return int(denoiser.schedule.T)
    return DEFAULT_STEPS.get(sampler, 50)


__all__ = ["ALWAYS_STOCHASTIC", "DEFAULT_STEPS", "FIRST_STEP_DETERMINISTIC", "GRIDS", "SAMPLERS", "SPACINGS", "carries_start", "ddim_invert", "default_steps", "discrete_timesteps",
           "get_sampler", "initial_noise", "is_deterministic", "ode_step", "randn", "sample_consistency",
           "sample_ddim", "sample_ddpm", "sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_dpmpp_3m", "sample_dpmpp_3m_sde",
           "sample_euler",
           "sample_euler_ancestral", "sample_heun", "takes_option", "time_grid"]

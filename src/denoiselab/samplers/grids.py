"""Time grids: where a sampler evaluates the denoiser, built outside the samplers and passed in.

Glossary (Karras et al. 2022, sec. 3; Lu et al. 2022, sec. 3):

| symbol    | meaning                                                                   |
| --------- | ------------------------------------------------------------------------- |
| ``N``     | solver steps; a grid holds N times, and the last step goes to clean data |
| ``t``     | the denoiser's own time (VP: fractional step index; flow: tau in [0, 1])  |
| ``sigma`` | noise level s / a of x_t = a x0 + s eps; clean data is sigma = 0          |
| ``u``     | normalised time: 1 at the grid's noise end, 0 at clean data              |
| ``rho``   | Karras et al. 2022, eq. 5: spacing exponent of sigma^(1/rho)             |
| ``lambda``| log-SNR = -2 log sigma (DPM-Solver's half-log-SNR is -log sigma)         |

A grid is a 1-D float64 tensor of N times in the order the sampler visits them (noise first),
excluding clean data, which every sampler appends as its final target. The discrete spacings of
a trained DDPM (``leading``, ``trailing``, ``linspace``) return int64 indices.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import DenoiselabError
from .timesteps import SPACINGS, discrete_timesteps

F64 = torch.float64


def _normalised_times(denoiser, u: torch.Tensor) -> torch.Tensor:
    """Map u in (0, 1] (1 = the noise end) onto the denoiser's time axis, linearly."""
    T = denoiser.schedule.T if denoiser.schedule is not None else None
    if T is not None and len(u) > T:
        # More points than trained steps would put t below 0, where alpha_bar rounds to 1.
        raise DenoiselabError(f"a time grid on this model takes at most T = {T} steps, got {len(u)}")
    t_noise, t_clean = denoiser.time_range
    return t_clean + u * (t_noise - t_clean)


def uniform_grid(denoiser, steps: int) -> torch.Tensor:
    """Uniform in the model's own time: u_i = 1 - i/N (VP: t = T-1, ..., T/N - 1; flow: tau = 0, 1/N, ...)."""
    u = 1 - torch.arange(steps, dtype=F64) / steps
    return _normalised_times(denoiser, u)


def quadratic_grid(denoiser, steps: int) -> torch.Tensor:
    """Quadratic in time, denser near the data (the "quadratic" sub-sequence of DDIM, Song et al.
    2021), with the ends of the uniform grid (u from 1 to 1/N), so every point stays inside the
    trained range."""
    if steps == 1:
        return _normalised_times(denoiser, torch.ones(1, dtype=F64))
    ramp = 1 - torch.arange(steps, dtype=F64) / (steps - 1)
    u = 1 / steps + (1 - 1 / steps) * ramp**2
    return _normalised_times(denoiser, u)


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, eq. 5: sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho."""
    if steps == 1:
        return torch.tensor([sigma_max], dtype=F64)
    ramp = torch.arange(steps, dtype=F64) / (steps - 1)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def logsnr_sigmas(sigma_min: float, sigma_max: float, steps: int) -> torch.Tensor:
    """Uniform in log-SNR lambda = -2 log sigma between the ends (the "logSNR" step schedule of
    DPM-Solver, Lu et al. 2022)."""
    if steps == 1:
        return torch.tensor([sigma_max], dtype=F64)
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps, dtype=F64))


def _sigma_ends(denoiser, sigma_min: float | None, sigma_max: float | None) -> tuple[float, float]:
    """The grid's sigma range: the model's trained one unless narrowed (a VP model knows no sigma
    outside [sigma(0), sigma(T-1)]; a flow is trained on every sigma)."""
    lo, hi = denoiser.sigma_range
    if denoiser.schedule is not None:
        tol = 1e-6
        if (sigma_min and sigma_min < lo * (1 - tol)) or (sigma_max and sigma_max > hi * (1 + tol)):
            raise DenoiselabError(f"this model is trained on sigma in [{lo:.4g}, {hi:.4g}]: "
                                  "choose sigma_min and sigma_max inside it")
    lo, hi = sigma_min or lo, sigma_max or hi
    if not 0 < lo < hi < math.inf:
        raise DenoiselabError(f"grid needs 0 < sigma_min < sigma_max < inf, got {lo:g} and {hi:g}")
    return lo, hi


def karras_grid(denoiser, steps: int, rho: float = 7.0, sigma_min: float | None = None,
                sigma_max: float | None = None) -> torch.Tensor:
    """Karras et al. 2022 (rho = 7) between the model's trained sigma_min and sigma_max."""
    lo, hi = _sigma_ends(denoiser, sigma_min, sigma_max)
    return denoiser.t_from_sigma(karras_sigmas(lo, hi, steps, rho)).to(F64)


def logsnr_grid(denoiser, steps: int, sigma_min: float | None = None, sigma_max: float | None = None) -> torch.Tensor:
    lo, hi = _sigma_ends(denoiser, sigma_min, sigma_max)
    return denoiser.t_from_sigma(logsnr_sigmas(lo, hi, steps)).to(F64)


def logsnr_trailing_grid(denoiser, steps: int, sigma_min: float | None = None,
                         sigma_max: float | None = None) -> torch.Tensor:
    """Uniform in log-SNR from sigma_max with the final step striding to clean data: the first N of
    N + 1 log-SNR-uniform points from sigma_max to sigma_min (the "trailing" placement of Lin et al.
    2024, sec. 3.3, on the log-SNR grid). sigma_min is where the step after the last point would
    land, not a point of its own: below the data's resolution denoising changes nothing one can
    see, so a point there costs an evaluation for nothing, which at 2 steps is half the budget."""
    lo, hi = _sigma_ends(denoiser, sigma_min, sigma_max)
    return denoiser.t_from_sigma(logsnr_sigmas(lo, hi, steps + 1)[:-1]).to(F64)


def levels_grid(denoiser, steps: int, sigmas=None) -> torch.Tensor:
    """Given noise levels, highest first, one per step (``--sigmas``, or a student's measured best,
    ``runs.plan.LEVELS``): the times at which they sit on this model's process, which must span them."""
    if not sigmas:
        raise DenoiselabError("the levels grid needs its noise levels: give --sigmas SIGMA [SIGMA ...], highest first")
    sig = torch.as_tensor([float(x) for x in sigmas], dtype=F64)
    if len(sig) != steps:
        raise DenoiselabError(f"{len(sig)} noise levels for {steps} steps: give one level per step")
    if (sig <= 0).any() or (sig[1:] >= sig[:-1]).any():
        raise DenoiselabError(f"noise levels {', '.join(f'{x:g}' for x in sig.tolist())} must be positive and "
                              "decreasing, highest first")
    lo, hi = denoiser.sigma_range
    if sig[0] > hi * (1 + 1e-6) or sig[-1] < lo * (1 - 1e-6):
        raise DenoiselabError(f"noise levels {sig[0].item():g} to {sig[-1].item():g} leave the model's range "
                              f"{lo:.3g} to {hi:.3g}: give levels inside it")
    return denoiser.t_from_sigma(sig).to(F64)


def _discrete(name: str) -> Callable[..., torch.Tensor]:
    def grid(denoiser, steps: int) -> torch.Tensor:
        if denoiser.schedule is None:
            raise DenoiselabError(f"grid {name!r} picks steps of a discrete DDPM schedule; this model has none: "
                                  f"use {', '.join(CONTINUOUS)}")
        return discrete_timesteps(denoiser.schedule.T, steps, name)

    grid.__doc__ = f"The {name!r} subsequence of a trained DDPM's steps (see timesteps.discrete_timesteps)."
    return grid


GRIDS: dict[str, Callable[..., torch.Tensor]] = {
    "uniform": uniform_grid,
    "quadratic": quadratic_grid,
    "karras": karras_grid,
    "logsnr": logsnr_grid,
    "logsnr-trailing": logsnr_trailing_grid,
    "levels": levels_grid,
    **{name: _discrete(name) for name in SPACINGS},
}
CONTINUOUS = ("uniform", "quadratic", "karras", "logsnr", "logsnr-trailing")
SIGMA_GRIDS = ("karras", "logsnr", "logsnr-trailing")  # grids placed by their sigma ends (sigma_min, sigma_max)

# -- Noise range fitted to the data ----------------------------------------------------------
#
# A VP model's trained range ends far beyond where the data are visible (linear schedule,
# T = 1000: sigma up to 157 for 2D data of std 2), and far below where a sample is judged; a
# few-step grid spread over that whole range wastes most of its steps. The fitted range:
#
#   sigma_max = max_{i, j} ||x_i - x_j||   over a fixed subsample of the training data
#       (Song & Ermon 2020, "Improved techniques for training score-based generative models",
#       Technique 1: at that noise level any two data points are hard to tell apart, so
#       N(0, sigma_max^2 I) stands in for the noised data; Karras et al. 2022, sec. 5 and
#       Table 1, likewise fix sigma_max = 80 for images instead of a schedule's own end.)
#   sigma_min = images: one 8-bit level, 2 / 255 in [-1, 1] (Ho et al. 2020, sec. 3.3: the
#       decoder's bin width; finer noise changes no pixel);
#       points: the median nearest-neighbour distance within FIT_POINTS data points, the
#       spacing below which a 2048-point metric (chamfer, MMD) cannot see a difference.
# Both are then clamped into the model's trained range (``clamp_sigma_range``). A preset may store
# a measured range instead: on MNIST, sigma 10 to 0.2 beat the fitted 29.7 to 0.0078 at 10 and at
# 40 steps (docs/results/mnist.md, "The sampler's noise range"); the nearly binary digits are
# resolved far above one 8-bit level.

FIT_POINTS = 2048       # data points the fit looks at (the size every 2D metric compares)
FIT_IMAGES = 1000       # images the fit looks at (pairwise distances of 1000 x D)
PIXEL_LEVEL = 2 / 255   # one 8-bit level of an image in [-1, 1]


def fit_sigma_range(x: torch.Tensor, kind: str, seed: int = 0) -> tuple[float, float]:
    """(sigma_min, sigma_max) of a data set from its samples ``x`` (N, ...); ``kind`` is "points"
    or "images". See the block above for the formula and its sources."""
    x = torch.as_tensor(x).detach().to(F64).reshape(len(x), -1)
    if len(x) < 2:
        raise DenoiselabError("fitting a noise range needs at least 2 data points")
    n = min(len(x), FIT_IMAGES if kind == "images" else FIT_POINTS)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    d = torch.cdist(x[idx], x[idx])
    sigma_max = float(d.max())
    if kind == "images":
        sigma_min = PIXEL_LEVEL
    else:
        d.fill_diagonal_(math.inf)
        sigma_min = float(d.min(1).values.median())
    if not 0 < sigma_min < sigma_max:
        raise DenoiselabError(f"cannot fit a noise range to these data (sigma_min {sigma_min:g}, sigma_max "
                              f"{sigma_max:g}): are all samples equal? pass --sigma-min/--sigma-max")
    return sigma_min, sigma_max


def clamp_sigma_range(denoiser, sigma_min: float, sigma_max: float) -> tuple[float, float]:
    """The fitted range inside what the model was trained on (a VP model knows no sigma outside
    [sigma(0), sigma(T-1)])."""
    lo, hi = denoiser.sigma_range
    sigma_min, sigma_max = min(max(sigma_min, lo), hi), max(min(sigma_max, hi), lo)
    return (sigma_min, sigma_max) if sigma_min < sigma_max else (lo, hi)


# The grid each sampler uses when none is named: the discrete samplers keep their classic
# DDIM spacing; the ODE and SDE solvers on VP models take log-SNR-uniform steps with a trailing
# final stride over the data's noise range (the run's fitted sigma_min/sigma_max; see
# pipeline.sampling_plan), which measured best at 2 to 20 steps on the swiss-roll preset
# (benchmarks/samplers.py --by-steps; it beat karras and logsnr over the same range, with or
# without the trailing stride); flows take quadratic steps in tau (denser near the data: clearly
# best for DPM-Solver++ and Euler ancestral; Euler and Heun are within the seed spread of uniform tau).
DEFAULT_GRIDS = {"ddpm": "leading", "ddim": "leading"}
DEFAULT_CONTINUOUS_GRID = "logsnr-trailing"
DEFAULT_FLOW_GRID = "quadratic"


def default_grid(sampler: str, denoiser) -> str:
    # A consistency student jumps from a noise level it was distilled at, whatever its teacher's
    # process: a flow's tau grid would start it at pure noise (sigma = inf), which it never saw
    # (docs/results/distill.md, "Flow teachers").
    if sampler == "consistency":
        return DEFAULT_CONTINUOUS_GRID
    if denoiser.schedule is None:
        return DEFAULT_FLOW_GRID
    return DEFAULT_GRIDS.get(sampler, DEFAULT_CONTINUOUS_GRID)


def time_grid(denoiser, name: str, steps: int, **opts) -> torch.Tensor:
    """The named grid of ``steps`` times for this denoiser (``opts``: rho, sigma_min, sigma_max)."""
    if name not in GRIDS:
        raise DenoiselabError(f"unknown grid {name!r}: choose one of {', '.join(GRIDS)}")
    if steps < 1:
        raise DenoiselabError(f"steps must be at least 1, got {steps}")
    try:
        return GRIDS[name](denoiser, steps, **opts)
    except TypeError:
        raise DenoiselabError(f"grid {name!r} takes no options {sorted(opts)}: sigma_min and sigma_max shape the "
                              "karras and logsnr grids, rho the karras grid, --sigmas the levels grid") from None

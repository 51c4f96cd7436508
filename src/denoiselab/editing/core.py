"""What every edit shares: noise levels that mean the same on every process, a sampler run from a
chosen noise level down to clean data and one solver step of any sampler.

Glossary (Ho et al. 2020; Karras et al. 2022, eq. 4; Meng et al. 2022):

| symbol      | meaning                                                                        |
| ----------- | ------------------------------------------------------------------------------ |
| ``t``       | the denoiser's own time (VP: fractional step index; flow: tau in [0, 1])       |
| ``a``, ``s``| signal and noise scale of x_t = a x0 + s eps at time t                         |
| ``sigma``   | s / a, the noise level; it orders times the same way on every process          |
| ``level``   | a noise level named on the DDPM reference (linear betas, T = 1000, Ho et al.): |
|             | level 0.5 is the sigma of that schedule at t = 500, whatever the model's own   |
|             | schedule or process; level 0 is clean data, level 1 pure noise                 |
| ``x0_hat``  | the denoiser's estimate of the clean data                                      |

Edits are built from the denoiser and the samplers only (``samplers.get_sampler`` with a grid from
``samplers.grids``), so every sampler edits and every process (eps, x0, v, flow) is edited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..errors import DenoiselabError
from ..rng import SampleNoise
from ..samplers import get_sampler
from ..samplers.common import scales_at, sigma_of
from ..samplers.grids import default_grid, time_grid
from ..schedules import make_schedule

F64 = torch.float64

# The schedule that names noise levels: CS180's "t = 250, 500, 750 of 1000" and SDEdit's
# strengths are read on it, then matched by sigma on the model's own process.
REFERENCE_T = 1000
_REFERENCE = make_schedule("linear", REFERENCE_T)


def reference_sigma(level: float) -> float:
    """sigma of the DDPM reference schedule at t = level * T (fractional t: linear in log-SNR)."""
    ab = float(_REFERENCE.alpha_bar_at(torch.tensor(level * REFERENCE_T, dtype=F64)))
    return math.sqrt((1 - ab) / ab)


def check_level(level: float, what: str = "strength") -> float:
    level = float(level)
    if not 0.0 <= level <= 1.0 or math.isnan(level):
        raise DenoiselabError(f"{what} {level:g} is outside [0, 1]: 0 keeps the input, 1 starts from pure noise")
    return level


def time_at_level(denoiser, level: float) -> Optional[float]:
    """The denoiser's time whose noise level equals the reference's at ``level`` (None: clean data).

    Level 1 (and every level past the reference's last step) is the model's own noise end, so
    a flow starts from tau = 0 exactly and a VP model from t = T - 1.
    """
    level = check_level(level)
    if level == 0.0:
        return None
    t_noise, _ = denoiser.time_range
    if level * REFERENCE_T >= REFERENCE_T - 1:
        return float(t_noise)
    t = float(denoiser.t_from_sigma(torch.tensor(reference_sigma(level), dtype=F64)))
    if denoiser.schedule is not None:
        t = min(t, t_noise)
    return t


def noise_to(denoiser, x0: torch.Tensor, t: Optional[float], eps: torch.Tensor) -> torch.Tensor:
    """x_t = a x0 + s eps (Ho et al. 2020, eq. 4; for flows x_tau = tau x0 + (1 - tau) eps)."""
    a, s = scales_at(denoiser, t)
    return a * x0 + s * eps


def sigma_at(denoiser, t) -> float:
    return sigma_of(*scales_at(denoiser, t))


def grid_from(denoiser, t_start: float, steps: int, grid: Optional[str], sampler: str, grid_opts: dict | None = None) -> torch.Tensor:
    """The sampler's grid of ``steps`` points over the whole range, cut to the points below
    t_start's noise level, with t_start in front (Meng et al. 2022, SDEdit: start the reverse
    process at t0 instead of T). A strength of 1/2 thus runs about half the grid's steps."""

    full = time_grid(denoiser, grid or default_grid(sampler, denoiser), steps, **(grid_opts or {})).to(F64)
    sig0 = sigma_at(denoiser, t_start)
    # A point within 1e-9 of the start would repeat it (a zero-length step).
    below = [float(t) for t in full if sigma_at(denoiser, float(t)) < sig0 * (1 - 1e-9)]
    return torch.tensor([float(t_start)] + below, dtype=F64)


class Shots:
    """Callback that keeps about ``frames`` snapshots (t, x_t, x0_hat) of a sampler run, for GIFs."""

    def __init__(self, total_steps: int, frames: int = 25):
        self.every = max(1, total_steps // max(1, frames))
        self.shots: list[tuple[float, torch.Tensor, torch.Tensor]] = []
        self.count = 0

    def __call__(self, d: dict) -> None:
        if self.count % self.every == 0 and "x0_hat" in d:
            self.shots.append((d["t"], d["x"].clone(), d["x0_hat"].clone()))
        self.count += 1

    def add(self, t, x: torch.Tensor, x0_hat: torch.Tensor) -> None:
        self.shots.append((t, x.clone(), x0_hat.clone()))


@torch.no_grad()
def denoise_from(denoiser, x_t: torch.Tensor, t_start: Optional[float], *, sampler: str = "ddim", steps: int = 50,
                 grid: Optional[str] = None, grid_opts: dict | None = None, noise=None, cond=None, callback=None,
                 **opts) -> torch.Tensor:
    """Run ``sampler`` from x_t at time t_start down to clean data along the cut grid (iterative
    denoising, CS180 A.1.4; the reverse half of SDEdit). t_start None returns x_t unchanged."""
    if t_start is None:
        return x_t.clone()
    timesteps = grid_from(denoiser, t_start, steps, grid, sampler, grid_opts)
    return get_sampler(sampler)(denoiser, x_t, timesteps, noise=noise, cond=cond, callback=callback, **opts)


class _Stop(Exception):
    """Raised from a callback to end a sampler run after its first step."""


class StreamNoise(SampleNoise):
    """The run's per-sample noise with its streams moved to a block of their own, so a sampler
    called once per step (which always draws from streams 1, 2, ...) gets fresh noise each call
    while sample i still depends only on (seed, i)."""

    BLOCK = 8

    def __init__(self, noise: SampleNoise, block: int):
        super().__init__(noise.seed, noise.num, noise.offset)
        self.base = (block + 1) * self.BLOCK

    def randn(self, stream: int, sample_shape, dtype=torch.float32):
        return super().randn(self.base + stream, sample_shape, dtype)


def sampler_step(fn: Callable, denoiser, x: torch.Tensor, t: float, t_next: Optional[float], *, noise=None,
                 cond=None, callback=None, **opts) -> torch.Tensor:
    """One step of any sampler from t to t_next (None: clean data), returning x at t_next.

    Samplers run a grid to the end, so the step is the first step of a run on [t, t_next],
    ended by the callback; every sampler's own update is used (Heun's correction included;
    a multistep solver has no history here, so its step is first order).
    """
    if t_next is None:
        return fn(denoiser, x, torch.tensor([float(t)], dtype=F64), noise=noise, cond=cond, callback=callback, **opts)
    out: list[torch.Tensor] = []

    def stop(d: dict) -> None:
        if callback is not None:
            callback(d)
        out.append(d["x_next"])
        raise _Stop

    try:
        fn(denoiser, x, torch.tensor([float(t), float(t_next)], dtype=F64), noise=noise, cond=cond, callback=stop, **opts)
    except _Stop:
        return out[0]
    raise RuntimeError("sampler returned without reporting its first step")  # every sampler reports each step


@dataclass
class EditResult:
    """An edit's output: the images (``x``, the data's frame), the snapshots of the process for a
    GIF, and named image rows for the overview grid (label -> (N, C, H, W))."""

    x: torch.Tensor
    shots: list = field(default_factory=list)
    rows: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def full_grid(denoiser, sampler: str, steps: int, grid: Optional[str], grid_opts: dict | None) -> torch.Tensor:
    return time_grid(denoiser, grid or default_grid(sampler, denoiser), steps, **(grid_opts or {})).to(F64)


def per_sample_cond(cond, n: int) -> Optional[torch.Tensor]:
    """An int, a tensor of n labels, or None -> (n,) int64 or None."""
    if cond is None:
        return None
    c = torch.as_tensor(cond, dtype=torch.int64)
    return c.expand(n).clone() if c.ndim == 0 else c

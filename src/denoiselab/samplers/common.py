"""Pieces every sampler shares: noise draws and the callback."""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from ..rng import SampleNoise

Noise = Union[SampleNoise, torch.Generator, None]
Callback = Optional[Callable[[dict], None]]


def randn(noise: Noise, stream: int, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like ``like``; ``stream`` separates the draws of one run.
    Drawn on the CPU and moved to ``like``'s device, so sample i gets the same noise on every device."""
    if isinstance(noise, SampleNoise):
        return noise.randn(stream, tuple(like.shape[1:]), dtype=like.dtype).to(like.device)
    return torch.randn(like.shape, generator=noise, dtype=like.dtype).to(like.device)


def initial_noise(noise: Noise, num: int, sample_shape: tuple[int, ...]) -> torch.Tensor:
    """x_T ~ N(0, I): stream 0 of the run's noise."""
    return randn(noise, 0, torch.empty(num, *sample_shape))


def bcast(v, like: torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(v, dtype=like.dtype).to(like.device)
    return v.reshape(-1, *([1] * (like.ndim - 1))) if v.ndim else v


def scales_at(denoiser, t) -> tuple[float, float]:
    """(a, s) of the denoiser's process at time t as float64 numbers; t = None is clean data (1, 0)."""
    if t is None:
        return 1.0, 0.0
    a, s = denoiser.scales(torch.tensor([float(t)], dtype=torch.float64), torch.empty(1, dtype=torch.float64))
    return float(a), float(s)


def sigma_of(a: float, s: float) -> float:
    """sigma = s / a (Karras et al. 2022, eq. 4), inf at pure noise (a = 0)."""
    return s / a if a > 0 else float("inf")


def grid_pairs(timesteps) -> list[tuple[float, "float | None"]]:
    """(t, t_next) along the grid, the last step going to clean data (t_next = None)."""
    ts = [t.item() if isinstance(t, torch.Tensor) else t for t in timesteps]
    return list(zip(ts, ts[1:] + [None]))


def tvec(t: float, x: torch.Tensor) -> torch.Tensor:
    """The time t for every sample of the batch x."""
    return torch.full((x.shape[0],), float(t), dtype=torch.float64)


def report(callback: Callback, i: int, t, x: torch.Tensor, x0_hat: torch.Tensor, x_next: torch.Tensor) -> None:
    """Hand one step to the callback: the one place that defines what callbacks receive."""
    if callback is not None:
        callback({"i": i, "t": t, "x": x, "x0_hat": x0_hat, "x_next": x_next})
